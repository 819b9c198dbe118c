"""vcap: turn raw videos into English captions (frame features -> seq2seq captioner).

Stages, each a plain function: `vcap.extract.extractor.extract_folder`, `vcap.captioner.train.train`,
`vcap.captioner.evaluate.evaluate`, `vcap.pipeline.caption.caption_videos`, `vcap.pipeline.run.run_all`.
"""
