"""The emit stage (``stage.py``) and its helpers: dataset rows, files, card, report, and the
merge of people's judgements into IQA labels."""
