"""GNU Radio 3.10 blocks (need GNU Radio's Python bindings: Debian/Ubuntu ``apt install gnuradio``).

``classifier``: a sync block that classifies a complex stream with an
edgeprune bundle; ``edgeprune_classifier.block.yml`` describes it to GNU Radio
Companion (put this folder on ``GRC_BLOCKS_PATH`` and the repository on
``PYTHONPATH``).
"""
