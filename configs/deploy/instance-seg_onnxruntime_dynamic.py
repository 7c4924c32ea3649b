# mmdeploy: an mmdet instance segmenter (Mask R-CNN here) to ONNX Runtime,
# any input size and batch. Standalone: mmdeploy's own configs are not in
# its wheel. The masks leave the graph at the RoI head's 28x28; mmdeploy
# pastes them into the image in Python.
backend_config = dict(type='onnxruntime')
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_shape=None,  # the model's test pipeline sets the size
    input_names=['input'],
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        dets={0: 'batch', 1: 'num_dets'},
        labels={0: 'batch', 1: 'num_dets'},
        masks={0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'}),
    optimize=True)
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False))
