"""PropSAM networks: Box2Mask and PropMask, built on ``dynamic_network_architectures``.

Parameter names reproduce the released PAM checkpoints exactly (see
``shared/reference/official_pam_state_dict.json``): Box2Mask is a bare ``PlainConvUNet``; PropMask
keeps its UNet under ``proposing_stage`` and adds ``mask_encoder`` and ``cross_attns``.
"""

from __future__ import annotations

import math

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from torch import nn

from .config import FULL, ArchConfig


def _conv_kwargs(cfg: ArchConfig) -> dict:
    """Keyword arguments shared by every UNet/encoder of the family (docs/method.md, "Networks")."""
    return dict(
        n_stages=cfg.n_stages,
        features_per_stage=list(cfg.features_per_stage),
        conv_op=nn.Conv2d,
        kernel_sizes=[[3, 3]] * cfg.n_stages,
        strides=[[s, s] for s in cfg.strides],
        conv_bias=True,
        norm_op=nn.InstanceNorm2d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
    )


def _unet_kwargs(cfg: ArchConfig, input_channels: int) -> dict:
    """``PlainConvUNet`` arguments of the family, deep supervision on."""
    return dict(
        input_channels=input_channels,
        n_conv_per_stage=cfg.n_conv_per_stage,
        num_classes=cfg.num_classes,
        n_conv_per_stage_decoder=cfg.n_conv_per_stage_decoder,
        deep_supervision=True,
        **_conv_kwargs(cfg),
    )


class Box2Mask(PlainConvUNet):
    """Box prompt -> 2D mask network.

    Input: ``(B, 3, S, S)`` float32, the grey box crop in [-1, 1] repeated on 3 channels, with
    ``S = cfg.input_size``. Output: list of ``n_stages - 1`` logit maps
    ``(B, 2, S / 2**i, S / 2**i)``,
    highest resolution first (deep supervision).
    """

    def __init__(self, cfg: ArchConfig = FULL) -> None:
        super().__init__(**_unet_kwargs(cfg, input_channels=3))
        self.cfg = cfg


class CrossAttention(nn.Module):
    """Multi-head attention of adjacent-slice tokens to guiding-slice tokens.

    ``queries``/``keys``/``values`` are ``Linear(head_dim, head_dim, bias=False)`` shared by all
    heads; ``fc_out`` is ``Linear(C, C)``. Scores are scaled by ``sqrt(C)`` (the embedding size, not
    the head size), as in the released model.
    """

    def __init__(self, embed_size: int, heads: int = 1) -> None:
        super().__init__()
        if embed_size % heads:
            raise ValueError(f"embed_size {embed_size} not divisible by heads {heads}")
        self.embed_size = embed_size
        self.heads = heads
        self.head_dim = embed_size // heads
        self.values = nn.Linear(self.head_dim, self.head_dim, bias=False)
        self.keys = nn.Linear(self.head_dim, self.head_dim, bias=False)
        self.queries = nn.Linear(self.head_dim, self.head_dim, bias=False)
        self.fc_out = nn.Linear(heads * self.head_dim, embed_size)

    def forward(
        self, values: torch.Tensor, keys: torch.Tensor, query: torch.Tensor
    ) -> torch.Tensor:
        """Attend.

        Args:
            values: ``(N, L, C)`` tokens of the guiding mask features.
            keys: ``(N, L, C)`` tokens of the guiding image features.
            query: ``(N, Q, C)`` tokens of the adjacent image features.

        Returns:
            ``(N, Q, C)`` float tensor.
        """
        n, q_len, _ = query.shape
        v = self.values(values.reshape(n, values.shape[1], self.heads, self.head_dim))
        k = self.keys(keys.reshape(n, keys.shape[1], self.heads, self.head_dim))
        q = self.queries(query.reshape(n, q_len, self.heads, self.head_dim))
        energy = torch.einsum("nqhd,nkhd->nhqk", q, k)
        attention = torch.softmax(energy / math.sqrt(self.embed_size), dim=3)
        out = torch.einsum("nhqk,nkhd->nqhd", attention, v).reshape(n, q_len, self.embed_size)
        return self.fc_out(out)


class PropMaskUNet(PlainConvUNet):
    """The UNet of PropMask with its guiding-mask encoder and cross-attention blocks.

    Registered as ``PropMask.proposing_stage`` so parameter names match the released checkpoint.
    """

    def __init__(self, cfg: ArchConfig = FULL) -> None:
        super().__init__(**_unet_kwargs(cfg, input_channels=1))
        self.mask_encoder = PlainConvEncoder(
            input_channels=1,
            n_conv_per_stage=cfg.n_conv_per_stage,
            return_skips=True,
            **_conv_kwargs(cfg),
        )
        self.n_attn_stages = cfg.n_attn_stages
        attn_channels = cfg.features_per_stage[cfg.n_stages - cfg.n_attn_stages :]
        self.cross_attns = nn.ModuleList(CrossAttention(c, cfg.n_heads) for c in attn_channels)

    def forward(  # type: ignore[override]
        self, guiding_x: torch.Tensor, guiding_prp: torch.Tensor, adjacent_x: torch.Tensor
    ) -> list[torch.Tensor]:
        """See :meth:`PropMask.forward`."""
        b, n = adjacent_x.shape[:2]
        task_index = torch.arange(b, device=adjacent_x.device).repeat_interleave(n)
        return self.forward_flat(
            guiding_x, guiding_prp, adjacent_x.reshape(b * n, *adjacent_x.shape[2:]), task_index
        )

    def forward_flat(
        self,
        guiding_x: torch.Tensor,
        guiding_prp: torch.Tensor,
        adjacent_x: torch.Tensor,
        task_index: torch.Tensor,
    ) -> list[torch.Tensor]:
        """See :meth:`PropMask.forward_flat`."""
        if guiding_prp.ndim == 3:
            guiding_prp = guiding_prp[:, None]
        g_skips = self.encoder(guiding_x)
        m_skips = self.mask_encoder(guiding_prp)
        a_skips = self.encoder(adjacent_x)
        first = len(a_skips) - self.n_attn_stages
        skips = list(a_skips[:first])
        for attn, g, m, a in zip(
            self.cross_attns, g_skips[first:], m_skips[first:], a_skips[first:], strict=True
        ):
            # Each adjacent slice attends to the guiding slice of its own task.
            keys = _tokens(g)[task_index]
            values = _tokens(m)[task_index]
            out = attn(values, keys, _tokens(a))
            skips.append(a + out.transpose(1, 2).reshape(a.shape))
        return self.decoder(skips)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` feature map -> ``(N, H*W, C)`` tokens."""
    return x.flatten(2).transpose(1, 2)


class PropMask(nn.Module):
    """Mask propagation network: guiding slice + its mask -> masks on adjacent slices.

    All images are crops resized to ``S = cfg.input_size`` and scaled to [-1, 1].
    """

    def __init__(self, cfg: ArchConfig = FULL) -> None:
        super().__init__()
        self.cfg = cfg
        self.proposing_stage = PropMaskUNet(cfg)

    def forward(
        self, guiding_x: torch.Tensor, guiding_prp: torch.Tensor, adjacent_x: torch.Tensor
    ) -> list[torch.Tensor]:
        """Predict the object on ``N`` adjacent slices of each of ``B`` tasks.

        Args:
            guiding_x: ``(B, 1, S, S)`` float32 guiding image.
            guiding_prp: ``(B, S, S)`` or ``(B, 1, S, S)`` float32 guiding mask in {0, 1}.
            adjacent_x: ``(B, N, 1, S, S)`` float32 adjacent images.

        Returns:
            Deep-supervision logits, a list of ``n_stages - 1`` tensors
            ``(B * N, 2, S / 2**i, S / 2**i)`` (task-major order), highest resolution first.
        """
        return self.proposing_stage(guiding_x, guiding_prp, adjacent_x)

    def forward_flat(
        self,
        guiding_x: torch.Tensor,
        guiding_prp: torch.Tensor,
        adjacent_x: torch.Tensor,
        task_index: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Like :meth:`forward`, with a different number of adjacent slices per task.

        Args:
            guiding_x: ``(B, 1, S, S)`` float32 guiding images.
            guiding_prp: ``(B, S, S)`` or ``(B, 1, S, S)`` float32 guiding masks.
            adjacent_x: ``(M, 1, S, S)`` float32 adjacent images of all tasks.
            task_index: ``(M,)`` int64, the task (row of ``guiding_x``) of each adjacent slice.

        Returns:
            Deep-supervision logits, ``(M, 2, S / 2**i, S / 2**i)`` each.
        """
        return self.proposing_stage.forward_flat(guiding_x, guiding_prp, adjacent_x, task_index)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared modules counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
