# Entry points. Each creates or reuses the test environments (first run:
# tens of minutes on a fresh machine, mostly compiling mmcv's ops; seconds
# after; see docs/get_started.md):
#   .venv        the newest end of the torch range (torch 2.13)
#   .venv-floor  its floor (torch 2.0.1, numpy 1.26), where most OpenMMLab
#                users are
#   .venv-latest torch 2.14.1, the newest release, with mmcv-lite (mmcv's
#                ops do not compile for it): what needs no ops
#   .venv-deploy, .venv-deploy-newest
#                mmdeploy 1.3.1 and its pins over the floor's torch, and
#                over .venv's torch 2.13 (a venv of its own whose path adds
#                .venv's packages after its own)
VENV ?= .venv
PY := $(VENV)/bin/python
FLOOR_PY := .venv-floor/bin/python
LATEST_PY := .venv-latest/bin/python
DEPLOY_PY := .venv-deploy/bin/python
DEPLOY_NEWEST_PY := .venv-deploy-newest/bin/python
# What the floor runs: every family's models and mixed precision, weights
# and every payload (FLOOR_TESTS, less what is marked slow), and of the slow
# end-to-end runs (FLOOR_SLOW) one each: --amp with resume, resume after a
# kill, a detector and a segmenter through tools/train.py and tools/test.py,
# a shipped schedule_1x config's checkpoint through test, resume and the
# init API, Mask R-CNN on both block paths, --tta, ONNX export, the
# fuzzer's child processes, and the wheel installed over the floor's stack. The newest
# torch runs every slow test; running them all twice took CI past its time.
FLOOR_TESTS := tests/test_models tests/test_engine tests/test_weights.py \
	tests/test_safeload.py tests/test_safeload_corpus.py \
	tests/test_safeload_fuzz.py tests/test_load_from.py \
	tests/test_safe_urls.py tests/test_compat.py tests/test_registry.py \
	tests/test_deploy/test_export_fixes.py
FLOOR_SLOW := \
	"tests/test_engine/test_amp.py::test_train_amp_bf16_then_resume[seg-poolformer]" \
	tests/test_engine/test_resume.py::test_sigkill_then_resume_matches_uninterrupted \
	tests/test_tools/test_train_test.py::test_det_train_then_test \
	tests/test_tools/test_train_test.py::test_seg_train_then_test \
	tests/test_tools/test_train_test.py::test_export_onnx_segmentor_and_detector \
	tests/test_packaging/test_wheel.py::test_user_configs_inherit_ours \
	tests/test_safeload_fuzz.py::test_mutants_in_children \
	"tests/test_tools/test_roundtrip.py::test_shipped_config_round_trips[retinanet]" \
	"tests/test_configs/test_paths_agree.py::test_both_paths_give_the_same_model[Mask R-CNN]" \
	tests/test_configs/test_paths_agree.py::test_a_channels_last_output_is_caught \
	tests/test_tools/test_tta_and_tools.py::test_detector_tta
# What the newest torch runs without mmcv's ops: the backbones of every
# family, weights and payloads, mixed precision, ONNX export.
LATEST_TESTS := tests/test_models/test_fused.py \
	tests/test_models/test_poolformer.py tests/test_models/test_metaformer.py \
	tests/test_models/test_dispatch.py tests/test_engine/test_amp_family.py \
	tests/test_weights.py tests/test_safeload.py tests/test_safe_urls.py \
	tests/test_safeload_corpus.py tests/test_models/test_layout.py

.PHONY: setup setup-newest setup-floor setup-latest test test-newest \
	test-floor test-latest test-fast demo clean setup-deploy test-deploy \
	setup-deploy-newest test-deploy-newest

# the environments at once: one's downloads overlap another's compiling
setup:
	@$(MAKE) --no-print-directory -j3 setup-newest setup-floor setup-latest
	@$(MAKE) --no-print-directory setup-deploy setup-deploy-newest

setup-newest:
	@bash tools/setup_env.sh newest

setup-floor:
	@bash tools/setup_env.sh floor

setup-latest:
	@bash tools/setup_env.sh latest

# the whole suite on torch 2.13, the floor's share on torch 2.0, and what
# needs no mmcv ops on torch 2.14
test: setup
	$(PY) -m pytest tests -q
	$(FLOOR_PY) -m pytest $(FLOOR_TESTS) -q -m "not slow"
	$(FLOOR_PY) -m pytest $(FLOOR_SLOW) -q
	$(LATEST_PY) -m pytest $(LATEST_TESTS) -q
	@$(MAKE) --no-print-directory test-deploy test-deploy-newest

test-newest: setup-newest
	$(PY) -m pytest tests -q

test-floor: setup-floor
	$(FLOOR_PY) -m pytest $(FLOOR_TESTS) -q -m "not slow"
	$(FLOOR_PY) -m pytest $(FLOOR_SLOW) -q

test-latest: setup-latest
	$(LATEST_PY) -m pytest $(LATEST_TESTS) -q

# mmdeploy 1.3.1 pins protobuf and onnx: an environment of its own over the
# floor's torch, after the floor's (whose compiled mmcv wheel it reuses).
# Its tests: the conversions checked by ONNX Runtime, and the deploy page's
# example.
setup-deploy: setup-floor
	@bash tools/setup_env.sh deploy

test-deploy: setup-deploy
	$(DEPLOY_PY) -m pytest tests/test_deploy -q
	$(DEPLOY_PY) -m pytest tests/test_docs/test_readme.py -q -k deploy

# the same conversions on torch 2.13 (mmdeploy was released for torch 2.0):
# seconds to set up, nothing installed into .venv
setup-deploy-newest: setup-newest
	@bash tools/setup_env.sh deploy-newest

test-deploy-newest: setup-deploy-newest
	$(DEPLOY_NEWEST_PY) -m pytest tests/test_deploy -q

# the unit tier, newest torch: minutes (docs/contributing.md); what is
# marked slow (end-to-end runs of the tools) or integration (every config,
# family and size beyond a sample) is left to make test
test-fast: setup-newest
	$(PY) -m pytest tests -q -m "not slow and not integration"

demo: setup-newest
	$(PY) tools/demo.py

clean:
	rm -rf work_dirs outputs .pytest_cache
