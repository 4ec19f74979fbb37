"""Stage: training — fits what the inference stages run: the encoder's towers (frozen CPU path,
BERT-training paths, checkpoints, validation) and the blend's per-segment weights.

Reads a Dataset and its Split, the text documents, the base backbone, the ranking sources and the
metrics kernel; writes encoder directories (recsys.encoder.model.TwoTowerEncoder) and
SegmentWeights. Nothing below this layer imports it: serving never reaches training code.
"""
