"""adaptive-lr: do learning-rate schedulers that react to training feedback beat fixed schedules?"""
__version__ = "0.1.0"
