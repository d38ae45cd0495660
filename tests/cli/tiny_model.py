"""The tiny GQA model the command-line tests run (3 layers, 8 query / 2 KV heads, head_dim 32):
one definition for test_cli, test_crash_consistency and test_disk_full, which each write it as
tiny-model.ini beside their scenarios."""

TINY_MODEL = """[model]
name = tiny-gqa
num_layers = 3
num_q_heads = 8
num_kv_heads = 2
head_dim = 32
kv_bits = 16
rope_theta = 500000
hidden_size = 256
intermediate_size = 512
vocab_size = 1000
"""
