"""Classification: the one pipeline behind every face, from the tile grid to the outputs.

``grid`` lays the model's tiles over the area and ``workload`` sizes the run before it starts;
``pipeline.classify`` reads the tiles in strips (``strips``), runs them through the model in
batches (``batching``), checks them against near infrared (``evidence``) and streams them to
the tile layer and the class map (``sinks``); ``results`` holds what a run produced.
"""
