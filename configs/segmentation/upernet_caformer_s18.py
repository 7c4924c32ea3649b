# UperNet + CAFormer-S18, ADE20K 160K: 48.9 mIoU reported (54M, 1024G MACs).
# The figures as jjwang8/PolyNeXt's segmentation/README.md lists them (MACs at
# 512x2048); the recipe is ConvFormer-S18's (mmseg's ConvNeXt-T UperNet 160K,
# see upernet_convformer_s18.py); only the backbone differs (same channels).
_base_ = './upernet_convformer_s18.py'

model = dict(
    backbone=dict(
        type='CAFormer',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/caformer_s18.sail_in1k/'
            'resolve/main/model.safetensors')))
