"""Finetuning a pretrained BERT-family encoder on a downstream task, shared by every method package.

Task definitions and loaders (`tasks`: GLUE / SQuAD from files or tfds, bundled and generated offline tasks),
featurisation (`features`), heads and losses (`heads`), metrics (`metrics`), dev scoring (`evaluate`) and the
multi-seed runner (`runner`), which a method drives with a `runner.Recipe` (its optimizer pieces and checks).
"""
