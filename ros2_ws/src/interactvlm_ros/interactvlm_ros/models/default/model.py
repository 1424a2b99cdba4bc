"""The embedded default localizer network (MV-Loc family, segment-anything style, small).

Data flow for one frame (B = batch, V = views, D = ``dim``, r = render-embedding side, R = mask side)::

    pose [B,33,3] hands [B,2,21,3] label [B,384] obj [B,6] depth [B,4]
        │ FeatureEncoder                           -> tokens [B,T,D]         (T = 33 + 42 + 3)
        │ ContactTransformer (+ learned HSEG/OSEG queries)
        ▼                                          -> hseg [B,D], oseg [B,D]
    CamGate (official ``vi_v1``: sigmoid gate from the 5-number view code)
        ▼                                          -> view tokens [B,V,D] = seg ⊙ gate_v
    MaskDecoder (two-way attention between [mask token; V view tokens] and the per-view render
        embedding, then 2x2 transposed-conv upscaling and a hypernetwork dot product)
        ▼                                          -> logits [B,V,R,R]

    VertexDecoder (optional, ``vertex_head`` = rank > 0): hypernetwork dot product of hseg with learned
        per-vertex keys of the training template (started from the GT contact's principal components)
        ▼                                          -> human_vertex_logits [B,N]
    with ``vertex_branch``: the head's query comes from its own FeatureEncoder + ContactTransformer (same
        cues, started as a copy of the main ones) instead of the mask decoders' hseg

    GeometryVertexDecoder (optional, ``object_vertex_head`` = rank > 0): per-vertex object contact on ANY mesh.
        The frame graph outputs only the query, from the [OSEG] of its own encoder copy
        ▼                                          -> object_vertex_query [B,rank]
        the keys come from the mesh (normalised position + normal, Fourier features) and are computed once per
        mesh, like the render embeddings: logits [N] = query·key_v[:rank] / sqrt(rank) + key_v[rank]

    RenderEncoder (static renders [V,4,S,S] -> [V,D,r,r]) runs once per mesh / view set and is cached
    (predictor style): the human template never changes, an object mesh changes only when the user
    changes the label or mesh.

The blocks are the SAM decoder design scaled down (width 64-128 instead of 256, one two-way block
instead of two) and written here because no library ships a SAM decoder of this size that takes
arbitrary prompt tokens; attention itself is ``torch.nn.functional.scaled_dot_product_attention``.
Everything exports to ONNX (opset 17) with the TorchScript exporter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_POSE = 33
NUM_HAND = 21
LABEL_DIM = 384
OBJ_DIM = 6  # x0, y0, x1, y1 (person-box normalised), area, present
DEPTH_DIM = 4  # person depth (m), object-person depth (m), has_depth, has_object_depth
CAM_DIM = 5


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (SAM ``Attention``), optional
    internal down-projection. q [B,Nq,D], k/v [B,Nk,D] -> [B,Nq,D]."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        assert inner % heads == 0, "dim/downsample must be divisible by heads"
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class MLP(nn.Module):
    """Linear layers with ReLU between them. [..., in] -> [..., out]."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int = 2):
        super().__init__()
        dims = [dim_in] + [hidden] * (layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class EncoderBlock(nn.Module):
    """Pre-norm transformer block. x [B,T,D] -> [B,T,D]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h)
        return x + self.mlp(self.norm2(x))


class FeatureEncoder(nn.Module):
    """Per-frame cues -> tokens.

    Inputs: pose [B,33,3] (x, y in person-box units, visibility), hands [B,2,21,3] (same units,
    visibility 0 for a missing hand), label [B,384] (unit MiniLM embedding, see ``labels.py``),
    obj [B,6], depth [B,4]. Output tokens [B, 33+42+3, D] (pose, hands, label, object, depth), each
    with a learned identity embedding.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.pose_proj = nn.Linear(3, dim)
        self.hand_proj = nn.Linear(3, dim)
        self.pose_id = nn.Parameter(torch.randn(NUM_POSE, dim) * 0.02)
        self.hand_id = nn.Parameter(torch.randn(2 * NUM_HAND, dim) * 0.02)
        self.label_proj = nn.Sequential(nn.Linear(LABEL_DIM, dim), nn.GELU(), nn.Linear(dim, dim))
        self.obj_proj = nn.Linear(OBJ_DIM, dim)
        self.depth_proj = nn.Linear(DEPTH_DIM, dim)
        self.type_id = nn.Parameter(torch.randn(3, dim) * 0.02)

    def forward(self, pose, hands, label, obj, depth) -> torch.Tensor:
        b = pose.shape[0]
        p = self.pose_proj(pose) + self.pose_id
        h = self.hand_proj(hands.reshape(b, 2 * NUM_HAND, 3)) + self.hand_id
        extra = torch.stack([self.label_proj(label), self.obj_proj(obj), self.depth_proj(depth)], 1) + self.type_id
        return torch.cat([p, h, extra], 1)


class ContactTransformer(nn.Module):
    """Learned [HSEG], [OSEG] queries + tokens -> transformer -> (hseg [B,D], oseg [B,D])."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.hseg_fc = MLP(dim, dim, dim)
        self.oseg_fc = MLP(dim, dim, dim)

    def forward(self, tokens: torch.Tensor):
        b = tokens.shape[0]
        x = torch.cat([self.queries.unsqueeze(0).expand(b, -1, -1), tokens], 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.hseg_fc(x[:, 0]), self.oseg_fc(x[:, 1])


class CamGate(nn.Module):
    """Official ``vi_v1`` camera encoder: gate_v = sigmoid(view_transforms[v](relu(L2(relu(L1(c_v)))))).

    cam [V,5] -> gates [V,D] in (0,1); the per-view [SEG] copy is ``seg ⊙ gate_v`` (multiplicative,
    spec 2.6). Key layout matches the official module (spatial_encoder.{0,2}, view_transforms.{v})."""

    def __init__(self, dim: int, views: int = 4, hidden: int = 128):
        super().__init__()
        self.spatial_encoder = nn.Sequential(nn.Linear(CAM_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.view_transforms = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(views))

    def forward(self, cam: torch.Tensor) -> torch.Tensor:
        h = self.spatial_encoder(cam)
        return torch.sigmoid(torch.stack([t(h[v]) for v, t in enumerate(self.view_transforms)], 0))


class LayerNorm2d(nn.Module):
    """Channel LayerNorm for [N,C,H,W] (SAM ``LayerNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class RenderEncoder(nn.Module):
    """Static view renders -> embeddings (run once per mesh; cached by the predictor).

    renders [V,4,S,S] float (RGB in [0,1] + silhouette) -> [V,D,S/4,S/4] with a learned dense
    positional embedding added (SAM adds ``image_pe`` in the decoder; here it is folded in)."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        r = size // 4
        self.net = nn.Sequential(
            nn.Conv2d(4, 32, 3, stride=2, padding=1), LayerNorm2d(32), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), LayerNorm2d(64), nn.GELU(),
            nn.Conv2d(64, dim, 3, padding=1), LayerNorm2d(dim), nn.GELU(),
            nn.Conv2d(dim, dim, 1),
        )
        self.pos = nn.Parameter(torch.randn(1, dim, r, r) * 0.02)

    def forward(self, renders: torch.Tensor) -> torch.Tensor:
        return self.net(renders) + self.pos


class MaskDecoder(nn.Module):
    """SAM-style decoder for V views with the official multi-view broadcast (spec 2.7): every view's
    pass sees the same tokens [mask token; V view tokens] and differs only in its render embedding.

    view_tokens [B,V,D], render_emb [V,D,r,r] (shared by the batch) or [B,V,D,r,r] -> logits [B,V,4r,4r].
    """

    def __init__(self, dim: int, heads: int, up_channels: int = 16):
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(1, dim) * 0.02)
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_t2i = Attention(dim, heads, downsample=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dim * 4, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.cross_i2t = Attention(dim, heads, downsample=2)
        self.norm4 = nn.LayerNorm(dim)
        self.final_t2i = Attention(dim, heads, downsample=2)
        self.norm_final = nn.LayerNorm(dim)
        self.upscale = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, up_channels, 2, stride=2), nn.GELU(),
        )
        self.hyper = MLP(dim, dim, up_channels, layers=3)

    def forward(self, view_tokens: torch.Tensor, render_emb: torch.Tensor) -> torch.Tensor:
        b, v, d = view_tokens.shape
        if render_emb.dim() == 4:
            render_emb = render_emb.unsqueeze(0).expand(b, -1, -1, -1, -1)
        r = render_emb.shape[-1]
        src = render_emb.reshape(b * v, d, r * r).transpose(1, 2)  # [B*V, r*r, D]
        tok = torch.cat([self.mask_token.unsqueeze(0).expand(b, -1, -1), view_tokens], 1)  # [B,1+V,D]
        tok = tok.unsqueeze(1).expand(-1, v, -1, -1).reshape(b * v, 1 + v, d)  # same tokens for each view
        q = self.norm1(tok + self.self_attn(tok, tok, tok))
        q = self.norm2(q + self.cross_t2i(q, src, src))
        q = self.norm3(q + self.mlp(q))
        src = self.norm4(src + self.cross_i2t(src, q, q))
        q = self.norm_final(q + self.final_t2i(q, src, src))
        up = self.upscale(src.transpose(1, 2).reshape(b * v, d, r, r))  # [B*V, C, 4r, 4r]
        w = self.hyper(q[:, 0])  # [B*V, C]
        logits = (w[:, :, None, None] * up).sum(1)
        return logits.reshape(b, v, logits.shape[-2], logits.shape[-1])


class VertexDecoder(nn.Module):
    """Per-vertex contact straight on the template mesh: the SAM hypernetwork dot product, over mesh vertices
    instead of mask pixels. seg [B,D] -> logits [B,N] = query(seg)·key_v / sqrt(rank) + bias_v.

    ``key`` [N,rank] and ``bias`` [N] are learned per vertex of the template the model is trained on; training
    starts them from the principal components of the training set's per-vertex GT contact
    (:meth:`init_from_contacts`: "contact eigen-patterns"; from a random start the head only learned the most
    frequent patterns — hands, feet — and missed hats and seats, docs/default_model.md "v7").

    Why: the four views hide a quarter of the body (soles, palms, inner thighs, the seat) and 128² masks cannot
    draw a foot-sized patch, which caps the official lifting; this head sees every vertex. Written by hand: no
    library decodes a query vector over mesh vertices.
    """

    def __init__(self, dim: int, rank: int, num_vertices: int, hidden: int = 128):
        super().__init__()
        self.rank = rank
        self.key = nn.Parameter(torch.randn(num_vertices, rank) * 0.1)
        self.bias = nn.Parameter(torch.full((num_vertices,), -4.0))
        self.query = MLP(dim, hidden, rank)

    @torch.no_grad()
    def init_from_contacts(self, contact: torch.Tensor) -> float:
        """contact [S,N] in [0,1] (training GT) -> keys = top-``rank`` principal directions (scaled to unit
        rms per entry), bias = logit of each vertex's contact rate (clipped to [1e-3, 0.5]).
        Returns the fraction of the variance the basis explains."""
        c = contact.double()
        mean = c.mean(0)
        _, s, vt = torch.linalg.svd(c - mean, full_matrices=False)
        r = min(self.rank, vt.shape[0])
        key = torch.zeros_like(self.key, dtype=torch.float64)
        key[:, :r] = vt[:r].T * (vt.shape[1] / self.rank) ** 0.5
        self.key.copy_(key.float())
        rate = mean.clamp(1e-3, 0.5)
        self.bias.copy_(torch.log(rate / (1 - rate)).float())
        return float((s[:r] ** 2).sum() / (s ** 2).sum().clamp_min(1e-12))

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        return self.query(seg) @ self.key.T / self.rank ** 0.5 + self.bias


class GeometryVertexDecoder(nn.Module):
    """Per-vertex contact on an arbitrary mesh: the hypernetwork dot product of :class:`VertexDecoder`, with keys
    computed from each vertex's geometry instead of learned per vertex (object meshes differ per label and per user).

    geometry [N,6] (normalised position + unit normal, :func:`object_geometry`) -> keys [N,rank+1]
    (:meth:`keys`: Fourier features of the position at ``freqs`` octaves, then an MLP; the last column is a bias);
    seg [B,D] -> query [B,rank] (:meth:`query`); :meth:`logits` (query, keys) -> [B,N].
    Keys depend only on the mesh, so the predictor computes them once per mesh (like the render embeddings) and the
    per-frame graph outputs only the query. Written by hand: no library decodes a query over mesh vertices.
    """

    def __init__(self, dim: int, rank: int, freqs: int = 4, hidden: int = 128):
        super().__init__()
        self.rank = int(rank)
        self.freqs = int(freqs)
        self.register_buffer("octaves", (2.0 ** torch.arange(self.freqs, dtype=torch.float32)) * torch.pi,
                             persistent=False)
        self.key_mlp = MLP(6 + 6 * self.freqs, hidden, self.rank + 1, layers=3)
        self.query = MLP(dim, hidden, self.rank)
        with torch.no_grad():  # start from "no contact anywhere" (contact covers a few % of an object's vertices)
            self.key_mlp.layers[-1].bias[-1] = -3.0

    def keys(self, geometry: torch.Tensor) -> torch.Tensor:
        """geometry [N,6] -> keys [N,rank+1]."""
        pos = geometry[:, :3]
        ff = (pos[:, :, None] * self.octaves).reshape(len(pos), -1)
        return self.key_mlp(torch.cat([geometry, torch.sin(ff), torch.cos(ff)], 1))

    def logits(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query [B,rank], keys [N,rank+1] -> logits [B,N]."""
        return query @ keys[:, :self.rank].T / self.rank ** 0.5 + keys[:, self.rank]


def object_geometry(vertices, faces):
    """Mesh -> float32 numpy [N,6]: spec-3.6-normalised vertex positions (what ``assets.object_assets`` renders) and
    unit vertex normals (trimesh: face normals weighted by face angle) — the input of
    :meth:`GeometryVertexDecoder.keys`, the same in training (dataset meshes) and inference (the pipeline's object
    mesh). Not ``assets.vertex_normals`` (area-weighted): v9's keys were trained on these (up to 3.6° apart on
    average, e.g. the chair), so a switch needs a retrain."""
    import numpy as np
    import trimesh

    from ...objects import normalize_mesh

    v = normalize_mesh(np.asarray(vertices, np.float32))
    tm = trimesh.Trimesh(v, np.asarray(faces, np.int64), process=False)
    n = np.nan_to_num(np.asarray(tm.vertex_normals, np.float32))
    return np.concatenate([v, n], 1).astype(np.float32)


class DefaultContactNet(nn.Module):
    """Whole network. ``forward`` = per-frame part (what ONNX exports); ``encode_renders`` = static part.

    forward(pose [B,33,3], hands [B,2,21,3], label [B,384], obj [B,6], depth [B,4],
            human_emb [V,D,r,r], human_cam [V,5], object_emb [V,D,r,r], object_cam [V,5])
        -> human_logits [B,V,R,R], object_logits [B,V,R,R]   (R = ``mask_size``)
           [, human_vertex_logits [B,N]  with ``vertex_head > 0``; N = ``vertices``]
           [, object_vertex_query [B,rank]  with ``object_vertex_head = rank > 0``]

    ``object_vertex_head`` (v9+): object contact per vertex of any mesh from its own encoder copy
    (``object_vertex_features`` + ``object_vertex_transformer``, its [OSEG] output) and a
    :class:`GeometryVertexDecoder`; :meth:`object_vertex_keys` runs once per mesh (docs/default_model.md "v9").

    ``vertex_branch`` (v8+): the vertex head reads its own encoder (``vertex_features`` + ``vertex_transformer``,
    the main ones' architecture; only its [HSEG] output is used) instead of the shared hseg, so it can be trained
    on its own, ~50× faster than the mask decoders, without moving the masks (docs/default_model.md "v8").
    """

    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4, render_size: int = 64, mask_size: int = 64,
                 views: int = 4, up_channels: int = 16, vertex_head: int = 0, vertices: int = 0,
                 vertex_branch: bool = False, object_vertex_head: int = 0, object_vertex_freqs: int = 4):
        super().__init__()
        self.config = dict(dim=dim, depth=depth, heads=heads, render_size=render_size, mask_size=mask_size,
                           views=views, up_channels=up_channels)
        if vertex_head:  # only then in the config: checkpoints without the head keep their config
            if vertices <= 0:
                raise ValueError("vertex_head needs vertices = the template's vertex count")
            self.config.update(vertex_head=int(vertex_head), vertices=int(vertices))
            if vertex_branch:
                self.config["vertex_branch"] = True
        elif vertex_branch:
            raise ValueError("vertex_branch needs vertex_head > 0")
        if object_vertex_head:
            self.config.update(object_vertex_head=int(object_vertex_head), object_vertex_freqs=int(object_vertex_freqs))
        self.mask_size = mask_size
        self.features = FeatureEncoder(dim)
        self.transformer = ContactTransformer(dim, depth, heads)
        self.cam_gate = CamGate(dim, views)
        self.human_render_encoder = RenderEncoder(dim, render_size)
        self.object_render_encoder = RenderEncoder(dim, render_size)
        self.human_decoder = MaskDecoder(dim, heads, up_channels)
        self.object_decoder = MaskDecoder(dim, heads, up_channels)
        self.human_vertex_decoder = VertexDecoder(dim, int(vertex_head), int(vertices)) if vertex_head else None
        self.vertex_features = FeatureEncoder(dim) if vertex_branch else None
        self.vertex_transformer = ContactTransformer(dim, depth, heads) if vertex_branch else None
        ov = int(object_vertex_head)
        self.object_vertex_features = FeatureEncoder(dim) if ov else None
        self.object_vertex_transformer = ContactTransformer(dim, depth, heads) if ov else None
        self.object_vertex_decoder = GeometryVertexDecoder(dim, ov, int(object_vertex_freqs)) if ov else None

    @property
    def has_vertex_head(self) -> bool:
        return self.human_vertex_decoder is not None

    @property
    def vertex_count(self) -> int:
        """Vertices of the template the vertex head predicts on (0 without the head)."""
        return 0 if self.human_vertex_decoder is None else int(self.human_vertex_decoder.key.shape[0])

    @property
    def has_vertex_branch(self) -> bool:
        return self.vertex_transformer is not None

    def vertex_logits(self, pose, hands, label, obj, depth, hseg: torch.Tensor) -> torch.Tensor:
        """Vertex head output [B,N] (requires the head): from the branch's own [HSEG] when there is a branch,
        else from the shared ``hseg`` [B,D]."""
        if self.vertex_transformer is not None:
            hseg = self.vertex_transformer(self.vertex_features(pose, hands, label, obj, depth))[0]
        return self.human_vertex_decoder(hseg)

    @property
    def has_object_vertex_head(self) -> bool:
        return self.object_vertex_decoder is not None

    def object_vertex_query(self, pose, hands, label, obj, depth) -> torch.Tensor:
        """Per-frame half of the object vertex head: [OSEG] of its own encoder -> query [B,rank]."""
        oseg = self.object_vertex_transformer(self.object_vertex_features(pose, hands, label, obj, depth))[1]
        return self.object_vertex_decoder.query(oseg)

    def object_vertex_keys(self, geometry: torch.Tensor) -> torch.Tensor:
        """Per-mesh half: geometry [N,6] (:func:`object_geometry`) -> keys [N,rank+1] (cache them per mesh)."""
        return self.object_vertex_decoder.keys(geometry)

    @torch.no_grad()
    def init_object_vertex_branch_from_main(self) -> None:
        """Start the object branch's encoder as a copy of the main encoder (whose [OSEG] drives the object masks)."""
        self.object_vertex_features.load_state_dict(self.features.state_dict())
        self.object_vertex_transformer.load_state_dict(self.transformer.state_dict())

    @torch.no_grad()
    def init_vertex_branch_from_main(self) -> None:
        """Start the branch as a copy of the main encoder (the features the vertex head was trained on)."""
        self.vertex_features.load_state_dict(self.features.state_dict())
        self.vertex_transformer.load_state_dict(self.transformer.state_dict())

    def encode_renders(self, renders: torch.Tensor, side: str) -> torch.Tensor:
        """renders [V,4,S,S] (or [N*V,...]) -> [V,D,S/4,S/4] for side 'human' | 'object'."""
        enc = self.human_render_encoder if side == "human" else self.object_render_encoder
        return enc(renders)

    def seg_embeddings(self, pose, hands, label, obj, depth):
        return self.transformer(self.features(pose, hands, label, obj, depth))

    def decode(self, seg: torch.Tensor, emb: torch.Tensor, cam: torch.Tensor, side: str) -> torch.Tensor:
        """seg [B,D], emb [V,D,r,r] or [B,V,D,r,r], cam [V,5] -> logits [B,V,R,R]."""
        view_tokens = seg.unsqueeze(1) * self.cam_gate(cam).unsqueeze(0)
        dec = self.human_decoder if side == "human" else self.object_decoder
        logits = dec(view_tokens, emb)
        if logits.shape[-1] != self.mask_size:
            b, v = logits.shape[:2]
            logits = F.interpolate(logits.reshape(b * v, 1, *logits.shape[-2:]), size=(self.mask_size, self.mask_size),
                                   mode="bilinear", align_corners=False).reshape(b, v, self.mask_size, self.mask_size)
        return logits

    def forward(self, pose, hands, label, obj, depth, human_emb, human_cam, object_emb, object_cam):
        hseg, oseg = self.seg_embeddings(pose, hands, label, obj, depth)
        out = (self.decode(hseg, human_emb, human_cam, "human"), self.decode(oseg, object_emb, object_cam, "object"))
        if self.human_vertex_decoder is not None:
            out = out + (self.vertex_logits(pose, hands, label, obj, depth, hseg),)
        if self.object_vertex_decoder is not None:
            out = out + (self.object_vertex_query(pose, hands, label, obj, depth),)
        return out


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
