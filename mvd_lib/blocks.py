"""Transformer building blocks shared by every model: attention, block, patch/tubelet embeddings, decoder.

Mirrors `Attention`, `Block`, `PatchEmbed` and `PretrainVisionTransformerDecoder` of the reference
(`modeling_finetune.py`, `modeling_student.py`; mvd_reference.md sections 1 and 3), with timm's `Mlp` and
`DropPath` as the parts that fit unchanged. Parameter names match the reference checkpoints.

Attention biases come in two layouts, both common in the checkpoints users load:
- "qv" (VideoMAE / MVD): `qkv.weight` without bias plus `q_bias` and `v_bias`; the effective qkv bias is
  `concat(q_bias, 0, v_bias)`, i.e. a fused qkv bias whose k part is fixed at zero;
- "fused" (MAE / timm): an ordinary `qkv.bias` of size 3D.
Attention runs through `F.scaled_dot_product_attention` (SDPA) by default; `attention_impl("math")` switches
to the reference's explicit softmax(q k^T * scale) v, for checks and benchmarks.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp
from torch import nn

BiasMode = Literal["qv", "fused", "none"]
_ATTENTION_IMPL: str = "sdpa"


@contextlib.contextmanager
def attention_impl(impl: Literal["sdpa", "math"]) -> Iterator[None]:
    """Temporarily choose how attention is computed: "sdpa" (fused kernels) or "math" (explicit softmax)."""
    global _ATTENTION_IMPL
    if impl not in ("sdpa", "math"):
        raise ValueError(f"attention impl must be 'sdpa' or 'math', got {impl!r}")
    previous, _ATTENTION_IMPL = _ATTENTION_IMPL, impl
    try:
        yield
    finally:
        _ATTENTION_IMPL = previous


class Attention(nn.Module):
    """Multi-head self-attention. x: [B, N, D] -> [B, N, D]; scale head_dim^-0.5."""

    def __init__(self, dim: int, heads: int, bias: BiasMode = "qv", attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=bias == "fused")
        if bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_bias(self) -> torch.Tensor | None:
        """The effective fused bias [3D]: concat(q_bias, 0, v_bias) in the "qv" layout."""
        if self.q_bias is None:
            return self.qkv.bias
        return torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = F.linear(x, self.qkv.weight, self.qkv_bias())  # [B, N, 3D]
        q, k, v = qkv.reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [B, h, N, hd]
        p = self.attn_drop if self.training else 0.0
        if _ATTENTION_IMPL == "sdpa":
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, h, N, N]
            x = F.dropout(attn, p) @ v
        x = x.transpose(1, 2).reshape(B, N, D)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)). x: [B, N, D] -> [B, N, D]."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        bias: BiasMode = "qv",
        drop_path: float = 0.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, bias=bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        # dropout only after fc2, as in the reference Mlp (timm's default would also drop after the activation)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=(0.0, drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
    """Apply blocks in order; with `checkpointing`, recompute activations in the backward pass to save memory."""
    for blk in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x


def make_blocks(
    dim: int, depth: int, heads: int, mlp_ratio: float, bias: BiasMode, drop_path: float, norm_eps: float = 1e-6
) -> nn.ModuleList:
    """`depth` blocks with stochastic depth rising linearly from 0 to `drop_path` (reference rule)."""
    rates = torch.linspace(0, drop_path, depth, device="cpu").tolist() if depth else []
    return nn.ModuleList(
        Block(dim, heads, mlp_ratio, bias=bias, drop_path=rates[i], norm_eps=norm_eps) for i in range(depth)
    )


class TubeletEmbed(nn.Module):
    """Conv3d tubelet embedding, kernel = stride = (tubelet, p, p). x: [B, C, T, H, W] -> [B, N, D], (t,h,w) order."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, tubelet_size: int):
        super().__init__()
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class PatchEmbed2d(nn.Module):
    """Conv2d patch embedding. x: [B, C, H, W] -> [B, L, D], row-major patch order."""

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Decoder(nn.Module):
    """Light decoder: blocks -> LayerNorm -> Linear head, applied to the LAST `num_out` tokens only.

    Keys `blocks.*`, `norm`, `head` as in the reference `PretrainVisionTransformerDecoder` (MVD `decoder_X`,
    VideoMAE `decoder`). x: [B, N_in, D_dec] -> [B, num_out, out_dim].
    """

    def __init__(
        self, dim: int, depth: int, heads: int, out_dim: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
        bias: BiasMode = "qv", norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.blocks = make_blocks(dim, depth, heads, mlp_ratio, bias, drop_path, norm_eps)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.head = nn.Linear(dim, out_dim)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, num_out: int) -> torch.Tensor:
        x = run_blocks(self.blocks, x, self.grad_checkpointing)
        return self.head(self.norm(x[:, -num_out:] if num_out > 0 else x))


def init_weights_(module: nn.Module, linear: Literal["xavier", "trunc_normal"] = "xavier") -> None:
    """Reference initialisation: Linear weights xavier-uniform (pretraining models) or truncated normal with
    std 0.02 (finetuning model), biases 0, LayerNorm weight 1 / bias 0. Conv layers keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            if linear == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
