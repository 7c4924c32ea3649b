# Semantic FPN + ConvFormer-B36, ADE20K 40K (no published result).
_base_ = './fpn_convformer_s18.py'
model = dict(
    backbone=dict(
        arch='b36',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/convformer_b36.sail_in1k'
            '/resolve/main/model.safetensors')),
    neck=dict(in_channels=[128, 256, 512, 768]))
