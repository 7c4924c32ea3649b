# mmdeploy: an mmdet detector (RetinaNet here) to ONNX Runtime, any input
# size and batch. Standalone (the bases are in _base_/ here): mmdeploy's own
# configs are not in its wheel.
#   from mmdeploy.apis import torch2onnx
#   torch2onnx(img, work_dir, 'end2end.onnx', THIS_FILE, MODEL_CONFIG, CKPT)
_base_ = ['./_base_/onnx_config.py', './_base_/backends/onnxruntime.py']
onnx_config = dict(
    # ONNX's RoiAlign before opset 16 makes every RoI at least a pixel wide
    # and high; mmcv's aligned RoIAlign (Mask R-CNN's) does not, and
    # opset 16's half_pixel mode is it
    opset_version=16,
    output_names=['dets', 'labels'],
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        dets={0: 'batch', 1: 'num_dets'},
        labels={0: 'batch', 1: 'num_dets'}))
# Box decoding and NMS are in the graph; mmdet's test_cfg gives the
# per-level top-k (nms_pre), these the rest.
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
        background_label_id=-1))
