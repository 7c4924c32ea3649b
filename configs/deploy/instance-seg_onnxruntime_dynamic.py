# mmdeploy: an mmdet instance segmenter (Mask R-CNN here) to ONNX Runtime,
# any input size and batch: the detection config with masks. The masks leave
# the graph at the RoI head's 28x28; mmdeploy pastes them into the image in
# Python.
_base_ = ['./detection_onnxruntime_dynamic.py']
onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(
        masks={0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'}))
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
