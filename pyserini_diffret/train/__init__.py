"""Fine-tuning (the paper's supervised recipe) for DiffRetriever encoders: ``train(TrainConfig(...))`` or
``python -m pyserini_diffret.train``."""
from pyserini_diffret.train.data import Example, TrainingDataError, load_examples, read_jsonl
from pyserini_diffret.train.trainer import TrainConfig, TrainResult, train

__all__ = ["Example", "TrainConfig", "TrainResult", "TrainingDataError", "load_examples",
           "read_jsonl", "train"]
