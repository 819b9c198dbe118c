"""vcap: turn raw videos into English captions (frame features -> seq2seq captioner).

    model = vcap.load("best.pt")
    model.caption("clip.mp4")

Stages, each a plain function: `vcap.extract.folder.extract_folder`, `vcap.captioner.train.train`,
`vcap.captioner.evaluate.evaluate`, `vcap.pipeline.caption.caption_videos`, `vcap.pipeline.run.run_all`.
`vcap.load` imports torch on first use, so `import vcap` stays light.
"""


def __getattr__(name: str):
    if name in ("load", "Model"):
        from vcap import api

        return getattr(api, name)
    raise AttributeError(f"module 'vcap' has no attribute {name!r}")
