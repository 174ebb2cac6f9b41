# The README's two commands: `make demo` and `make test`. Both build .venv on first use.
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo_output
# The scripts hide TensorFlow's start-up chatter themselves (quiet_tensorflow.py).

SEGMENTS := demo_segments_output
FRAMES := --frame_features --feature_names=rgb,audio --feature_sizes=1024,128 \
  --model=FrameLevelLogisticModel --batch_size=128

SEGMENT_EVAL := set -o pipefail; $(PY) eval.py --segment_labels \
  --eval_data_pattern='$(SEGMENTS)/data/segment/test*.tfrecord' \
  --train_dir=$(SEGMENTS)/model --run_once 2>&1 \
  | grep -E "epoch/eval number|ERROR" | sed -e 's/^.*\] //'

.PHONY: demo demo-segments test test-fast lint clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) make_sample_data.py --output_dir=$(DEMO)/data --num_train_videos=2000 \
	  --num_validate_videos=500 --num_test_videos=500 --mean_frames=20
	$(PY) describe_data.py --data_pattern='$(DEMO)/data/video/train*.tfrecord' \
	  --feature_names=mean_rgb,mean_audio --feature_sizes=1024,128
	$(PY) describe_data.py --data_pattern='$(DEMO)/data/frame/train*.tfrecord' --frame_features \
	  --feature_names=rgb,audio --feature_sizes=1024,128
	@echo "Training LogisticModel (training-batch metrics every 10 steps):"
	set -o pipefail; $(PY) train.py --train_data_pattern='$(DEMO)/data/video/train*.tfrecord' \
	  --feature_names=mean_rgb,mean_audio --feature_sizes=1024,128 --model=LogisticModel \
	  --batch_size=128 --num_epochs=10 --train_dir=$(DEMO)/model --start_new_model 2>&1 \
	  | grep -E "GAP:|Exited training loop|ERROR" | sed -e 's/^.*\] //'
	@echo "Evaluating the last checkpoint on the validate split:"
	set -o pipefail; $(PY) eval.py --eval_data_pattern='$(DEMO)/data/video/validate*.tfrecord' \
	  --train_dir=$(DEMO)/model --run_once 2>&1 \
	  | grep -E "epoch/eval number|Total: examples|ERROR" | sed -e 's/^.*\] //'
	@echo "Predicting the test split with the inference model eval.py wrote:"
	set -o pipefail; $(PY) inference.py --train_dir=$(DEMO)/model \
	  --input_data_pattern='$(DEMO)/data/video/test*.tfrecord' \
	  --output_file=$(DEMO)/predictions.csv 2>&1 | grep -E "Done with inference|ERROR" \
	  | sed -e 's/^.*\] //'
	@head -n 4 $(DEMO)/predictions.csv | cut -c 1-110 | sed -e 's/$$/ .../'
	set -o pipefail; $(PY) score_predictions.py --predictions_file=$(DEMO)/predictions.csv \
	  --data_pattern='$(DEMO)/data/video/test*.tfrecord' 2>&1 | grep -E "^(GAP|ERROR)"

# The 2019 segment task: frame-level training on video labels, fine-tuning on the rated
# segments of the validate split, segment mAP on the test split before and after, the
# Kaggle 2019 submission and its score.
demo-segments: $(STAMP)
	$(PY) make_sample_data.py --output_dir=$(SEGMENTS)/data --num_train_videos=2000 \
	  --num_validate_videos=500 --num_test_videos=500 --mean_frames=20 --formats=frame,segment
	@echo "Training FrameLevelLogisticModel on video-level labels:"
	set -o pipefail; $(PY) train.py --train_data_pattern='$(SEGMENTS)/data/frame/train*.tfrecord' \
	  $(FRAMES) --num_epochs=5 --train_dir=$(SEGMENTS)/model --start_new_model 2>&1 \
	  | grep -E "Exited training loop|ERROR" | sed -e 's/^.*\] //'
	@echo "Segment metrics on the test split before fine-tuning:"
	$(SEGMENT_EVAL)
	@echo "Fine-tuning on the rated segments of the validate split:"
	set -o pipefail; $(PY) train.py --segment_labels \
	  --train_data_pattern='$(SEGMENTS)/data/segment/validate*.tfrecord' \
	  $(FRAMES) --num_epochs=20 --train_dir=$(SEGMENTS)/model 2>&1 \
	  | grep -E "Exited training loop|ERROR" | sed -e 's/^.*\] //'
	@echo "Segment metrics on the test split after fine-tuning:"
	$(SEGMENT_EVAL)
	@echo "The Kaggle 2019 submission for the test split, and its score:"
	set -o pipefail; $(PY) inference.py --segment_labels --train_dir=$(SEGMENTS)/model \
	  --input_data_pattern='$(SEGMENTS)/data/segment/test*.tfrecord' \
	  --output_file=$(SEGMENTS)/segments.csv 2>&1 | grep -E "Done with inference|ERROR" \
	  | sed -e 's/^.*\] //'
	@head -n 3 $(SEGMENTS)/segments.csv | cut -c 1-100 | sed -e 's/$$/ .../'
	set -o pipefail; $(PY) segment_eval_inference.py \
	  --eval_data_pattern='$(SEGMENTS)/data/segment/test*.tfrecord' \
	  --submission_file=$(SEGMENTS)/segments.csv --top_n=100000 2>&1 | grep -E "^(Num classes|ERROR)"

# Two workers, each module's tests on one (their module fixtures are built once).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadscope

# A signal in under a minute: in-process tests on tiny models and files (marker `fast`).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m fast

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(DEMO) $(SEGMENTS)
