"""Fast-SCNN (Poudel, Liwicki, Cipolla 2019) on minitorch-seg: model, data, training, evaluation."""
