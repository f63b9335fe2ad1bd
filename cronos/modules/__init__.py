"""Building blocks: attention classes, encoders and decoders; each takes the mask explicitly."""
from .attention import AdditiveAttention, DotAttention, GeneralAttention, MultiHeadAttention, build_attention
from .decoders import RNNDecoder, TransformerDecoder, build_decoder
from .encoders import RNNEncoder, TransformerEncoder, build_encoder

__all__ = ["AdditiveAttention", "DotAttention", "GeneralAttention", "MultiHeadAttention", "build_attention",
           "RNNDecoder", "TransformerDecoder", "build_decoder", "RNNEncoder", "TransformerEncoder", "build_encoder"]
