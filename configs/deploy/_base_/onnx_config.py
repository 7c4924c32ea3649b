# What every deploy config here exports: ONNX at opset 11, the input named
# 'input', its size set by the model's test pipeline (mmdeploy's name and
# layout for this file: _base_/onnx_config.py). A task's config adds its
# outputs' names and dynamic axes.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_shape=None,  # the model's test pipeline sets the size
    input_names=['input'],
    optimize=True)
