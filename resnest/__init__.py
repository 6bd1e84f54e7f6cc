"""ResNeSt in MindSpore 2.x: models, training, evaluation, export and serving."""
