# mmdeploy: an mmseg segmenter (Semantic FPN, UperNet) to ONNX Runtime, any
# input size and batch. Standalone (the bases are in _base_/ here): mmdeploy's
# own configs are not in its wheel. The graph ends in the argmax (labels,
# N x 1 x H x W); with with_argmax=False it gives the logits (N x classes x
# H x W) and mmdeploy takes the argmax in Python. Either way it runs the whole
# image: converting a model config whose test_cfg has mode='slide' (the
# UperNet recipes') is an error; set model.test_cfg=dict(mode='whole') to
# deploy whole-image inference.
_base_ = ['./_base_/onnx_config.py', './_base_/backends/onnxruntime.py']
onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        output={0: 'batch', 2: 'height', 3: 'width'}))
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
