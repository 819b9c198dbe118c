#!/usr/bin/env bash
# The main job on the shipped samples: extract features from samples/videos into OUT (default: demo/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-demo}
if python -c "import torchvision; torchvision.models.VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)" 2>/dev/null; then
    weights=imagenet
else
    echo "note: the ImageNet VGG16 weights cannot be downloaded here, so this demo uses random VGG16 weights" \
         "(--weights none): the pipeline runs end to end, but the features carry no ImageNet knowledge."
    weights=none
fi
vcap extract "$here/videos" "$out/feats" --frames 16 --weights "$weights"
