"""Reference data for models/clip: CLIP ViT dense features with SelectiveCL's ClearCLIP last block,
and CLIP text features, from open_clip's own modules on random weights.

The weights are drawn here from a torch.Generator with a fixed seed, tensor by tensor in
open_clip's state-dict order, as randn(shape) * std + mean (float32) with the mean/std of
models/clip.InitSpec; the Go package draws the same numbers from the same seed. The tensors
OpenAI's release keeps in float16 are rounded to float16, and the model is built by open_clip
exactly as SelectiveCL builds it (load_openai_model / build_model_from_openai_state_dict, then
.float(), QuickGELU). The ClearCLIP image forward is written below from METHOD.md section 2 and the
released code's VisionTransformer.forward(model_type='ClearCLIP', ignore_residual=True); the text
side is open_clip's CLIP.encode_text.

Files (under --out):
  tiny_raw.pt          the tiny model's weights as drawn (float32), open_clip key order
  tiny_openai.pt       the same in OpenAI's TorchScript container (float16 where OpenAI has it,
                       plus input_resolution/context_length/vocab_size)
  tiny_state_dict.pt   open_clip's state dict of the model loaded from tiny_openai.pt (float32)
  tiny_selectivecl.pt  that state dict under "net." beside other keys, as SelectiveCL saves
  tiny_ref.pt          images, tokens, dense features and text features of the tiny model
  full_ref.pt          ViT-B/16 (seeded weights, not stored): per-tensor float64 sums of the
                       loaded weights, one 224x224 image, its dense features, the tokens and text
                       features of the affordance prompts of the 36 Seen classes and
                       the exocentric prompts of four
  bpe_simple_vocab_16e6.txt.gz   open_clip's vocabulary (for the Go tokenizer)
  python.txt           this interpreter (the Go tests run check_torchscript.py with it)
"""
import argparse
import math
import os
import shutil
import sys
from collections import OrderedDict

import torch
from torch import nn

import open_clip
from open_clip.model import build_model_from_openai_state_dict

TINY = dict(embed=32, vwidth=128, vlayers=2, patch=16, grid=4, ctx=77, vocab=1000, twidth=128, tlayers=2)
FULL = dict(embed=512, vwidth=768, vlayers=12, patch=16, grid=14, ctx=77, vocab=49408, twidth=512, tlayers=12)
TINY_SEED = 11
FULL_SEED = 7

SEEN = ["beat", "boxing", "brush_with", "carry", "catch", "cut", "cut_with", "drag", "drink_with",
        "eat", "hit", "hold", "jump", "kick", "lie_on", "lift", "look_out", "open", "pack", "peel",
        "pick_up", "pour", "push", "ride", "sip", "sit_on", "stick", "stir", "swing", "take_photo",
        "talk_on", "text_on", "throw", "type_on", "wash", "write"]


# Exocentric prompts of a few classes (the text tower is the same for both kinds of prompt; all 36
# would double the full-size test's time).
EXO_SAMPLE = ["cut_with", "pick_up", "take_photo", "drink_with"]


def affordance_prompt(a):
    return "an item to " + a + ("" if "with" in a else " with")


def exo_prompt(a):
    return "a person " + a + " an item"


def param_shapes(c):
    """Names and shapes in the order of open_clip's CLIP.state_dict()."""
    def blocks(prefix, w, n):
        out = []
        for i in range(n):
            p = f"{prefix}.resblocks.{i}."
            out += [(p + "ln_1.weight", (w,)), (p + "ln_1.bias", (w,)),
                    (p + "attn.in_proj_weight", (3 * w, w)), (p + "attn.in_proj_bias", (3 * w,)),
                    (p + "attn.out_proj.weight", (w, w)), (p + "attn.out_proj.bias", (w,)),
                    (p + "ln_2.weight", (w,)), (p + "ln_2.bias", (w,)),
                    (p + "mlp.c_fc.weight", (4 * w, w)), (p + "mlp.c_fc.bias", (4 * w,)),
                    (p + "mlp.c_proj.weight", (w, 4 * w)), (p + "mlp.c_proj.bias", (w,))]
        return out

    vw, tw = c["vwidth"], c["twidth"]
    out = [("positional_embedding", (c["ctx"], tw)), ("text_projection", (tw, c["embed"])), ("logit_scale", ()),
           ("visual.class_embedding", (vw,)), ("visual.positional_embedding", (c["grid"] ** 2 + 1, vw)),
           ("visual.proj", (vw, c["embed"])), ("visual.conv1.weight", (vw, 3, c["patch"], c["patch"])),
           ("visual.ln_pre.weight", (vw,)), ("visual.ln_pre.bias", (vw,))]
    out += blocks("visual.transformer", vw, c["vlayers"])
    out += [("visual.ln_post.weight", (vw,)), ("visual.ln_post.bias", (vw,))]
    out += blocks("transformer", tw, c["tlayers"])
    out += [("token_embedding.weight", (c["vocab"], tw)), ("ln_final.weight", (tw,)), ("ln_final.bias", (tw,))]
    return out


def init_spec(c, name):
    """(mean, std) of a parameter; mirrors models/clip.InitSpec (std = 1/sqrt(n), exact in both)."""
    def inv(n):
        return 1 / math.sqrt(n)
    w, layers = (c["vwidth"], c["vlayers"]) if name.startswith("visual.") else (c["twidth"], c["tlayers"])
    is_ln = any(s in name for s in ("ln_1.", "ln_2.", "ln_pre.", "ln_post.", "ln_final."))
    if name == "logit_scale":
        return 4.6052, 0.0
    if name in ("visual.class_embedding", "visual.positional_embedding", "visual.proj"):
        return 0.0, inv(c["vwidth"])
    if name == "visual.conv1.weight":
        return 0.0, inv(3 * c["patch"] * c["patch"])
    if name == "text_projection":
        return 0.0, inv(c["twidth"])
    if name == "positional_embedding":
        return 0.0, 0.01
    if name == "token_embedding.weight":
        return 0.0, 0.02
    if is_ln and name.endswith(".weight"):
        return 1.0, 0.1
    if name.endswith(".bias") or name.endswith("in_proj_bias"):
        return 0.0, 0.02
    if name.endswith("attn.in_proj_weight"):
        return 0.0, inv(w)
    if name.endswith("mlp.c_fc.weight"):
        return 0.0, inv(2 * w)
    if name.endswith("attn.out_proj.weight") or name.endswith("mlp.c_proj.weight"):
        return 0.0, inv(2 * layers * w)
    raise KeyError(name)


def stored_as_float16(name):
    """The tensors open_clip's convert_weights_to_fp16 converts (and OpenAI stores in float16)."""
    return (name in ("visual.proj", "text_projection", "visual.conv1.weight")
            or any(s in name for s in (".attn.in_proj_", ".attn.out_proj.", ".mlp.c_fc.", ".mlp.c_proj.")))


def random_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for name, shape in param_shapes(c):
        mean, std = init_spec(c, name)
        out[name] = torch.randn(shape, generator=g, dtype=torch.float32) * std + mean
    return out


def release_dict(c, raw):
    """OpenAI's release layout: float16 where OpenAI stores float16, plus its three int entries."""
    out = OrderedDict((k, v.half() if stored_as_float16(k) else v.clone()) for k, v in raw.items())
    out["input_resolution"] = torch.tensor(c["patch"] * c["grid"])
    out["context_length"] = torch.tensor(c["ctx"])
    out["vocab_size"] = torch.tensor(c["vocab"])
    return out


class Node(nn.Module):
    """A module holding parameters and submodules only (no forward), to mirror a state dict."""


def save_torchscript(entries, path):
    root = Node()
    for name, t in entries.items():
        *mods, leaf = name.split(".")
        cur = root
        for m in mods:
            if m not in cur._modules:
                cur.add_module(m, Node())
            cur = cur._modules[m]
        if t.is_floating_point():
            cur.register_parameter(leaf, nn.Parameter(t, requires_grad=False))
        else:
            cur.register_buffer(leaf, t)
    torch.jit.save(torch.jit.script(root.eval()), path)


def interpolate_pos(visual, gh, gw):
    """The released VisionTransformer.interpolate_pos_encoding: bicubic, scale_factor with +0.1."""
    pos = visual.positional_embedding
    n = pos.shape[0] - 1
    dim = pos.shape[-1]
    side = int(math.sqrt(n))
    patch = pos[1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch = nn.functional.interpolate(patch, scale_factor=((gh + 0.1) / math.sqrt(n), (gw + 0.1) / math.sqrt(n)),
                                      mode="bicubic")
    assert patch.shape[-2:] == (gh, gw), patch.shape
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos[[0]].unsqueeze(0), patch), dim=1)


def clearclip_attention(attn, x):
    """Query-query attention of the released custom_attn(model_type='ClearCLIP'): x is (N, L, D)."""
    bsz, seq, dim = x.shape
    heads = attn.num_heads
    hd = dim // heads
    q, k, v = nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q = q.reshape(bsz, seq, heads, hd).transpose(1, 2).reshape(bsz * heads, seq, hd)
    v = v.reshape(bsz, seq, heads, hd).transpose(1, 2).reshape(bsz * heads, seq, hd)
    w = torch.softmax(torch.bmm(q, q.transpose(1, 2)) * hd ** -0.5, dim=-1)
    out = torch.bmm(w, v).reshape(bsz, heads, seq, hd).transpose(1, 2).reshape(bsz, seq, dim)
    return attn.out_proj(out)


@torch.no_grad()
def dense_features(model, images):
    visual = model.visual
    bsz, _, h, w = images.shape
    x = visual.conv1(images)
    gh, gw = x.shape[-2:]
    x = x.reshape(bsz, x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(bsz, -1, -1).to(x.dtype), x], dim=1)
    # The released code resizes only when the token count differs from the stored one.
    if x.shape[1] != visual.positional_embedding.shape[0]:
        x = x + interpolate_pos(visual, gh, gw).to(x.dtype)
    else:
        x = x + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    assert visual.transformer.batch_first
    for blk in blocks[:-1]:
        x = blk(x)
    last = blocks[-1]
    x = clearclip_attention(last.attn, last.ln_1(x))  # no residual, no MLP
    x = visual.ln_post(x)
    return x[:, 1:] @ visual.proj


def tiny_tokens(c):
    """Token rows for the tiny vocabulary: start 998, end 999 (the largest id), zero padding."""
    g = torch.Generator().manual_seed(3)
    sot, eot = c["vocab"] - 2, c["vocab"] - 1
    rows = []
    for length in (5, 17, c["ctx"]):  # the last one fills the context: end token at position 76
        body = torch.randint(1, sot, (length - 2,), generator=g).tolist()
        rows.append([sot] + body + [eot] + [0] * (c["ctx"] - length))
    tie = [sot] + torch.randint(1, sot, (6,), generator=g).tolist() + [eot, 5, eot] + [0] * (c["ctx"] - 10)
    rows.append(tie)  # two end tokens: argmax takes the first
    return torch.tensor(rows, dtype=torch.int64)


TINY_IMAGES = [  # (name, batch, height, width)
    ("b2_64x64", 2, 64, 64),    # the stored 4x4 grid: no resizing
    ("b1_96x64", 1, 96, 64),    # 6x4: bicubic resize, taller than wide
    ("b1_64x96", 1, 64, 96),    # 4x6
    ("b1_128x128", 1, 128, 128),  # 8x8: upsampled
    ("b1_32x32", 1, 32, 32),    # 2x2: downsampled
    ("b1_32x128", 1, 32, 128),  # 2x8 = 16 tokens as stored: the released code adds the 4x4 embedding as is
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    # The released code runs nn.MultiheadAttention with batch_first=False, which never takes the
    # fused "fast path"; open_clip 3.x is batch_first, so turn the fast path off to match.
    torch.backends.mha.set_fastpath_enabled(False)

    vocab = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    shutil.copyfile(vocab, os.path.join(out, "bpe_simple_vocab_16e6.txt.gz"))
    with open(os.path.join(out, "python.txt"), "w") as f:
        f.write(sys.executable + "\n")

    # ---- tiny model, every file format ----
    c = TINY
    raw = random_weights(c, TINY_SEED)
    torch.save(raw, os.path.join(out, "tiny_raw.pt"))
    openai_path = os.path.join(out, "tiny_openai.pt")
    save_torchscript(release_dict(c, raw), openai_path)
    model = open_clip.load_openai_model(openai_path, precision="fp32", device="cpu").eval()
    sd = model.state_dict()
    assert list(sd.keys()) == [n for n, _ in param_shapes(c)], "open_clip's key order changed"
    for k, v in raw.items():
        want = v.half().float() if stored_as_float16(k) else v
        assert torch.equal(sd[k], want), k
    torch.save(sd, os.path.join(out, "tiny_state_dict.pt"))
    sel = OrderedDict()
    sel["vit_model.cls_token"] = torch.randn(1, 1, 6, generator=torch.Generator().manual_seed(5))
    sel["vit_model.patch_embed.proj.weight"] = torch.zeros(6, 3, 2, 2)
    for k, v in sd.items():
        sel["net." + k] = v
    sel["aff_proj.fc1.weight"] = torch.zeros(12, 6)
    sel["aff_classifier.weight"] = torch.zeros(36, 6, 1, 1)
    torch.save(sel, os.path.join(out, "tiny_selectivecl.pt"))

    g = torch.Generator().manual_seed(4)
    ref = OrderedDict()
    for name, b, h, w in TINY_IMAGES:
        x = torch.randn(b, 3, h, w, generator=g)
        ref["image_" + name] = x
        ref["dense_" + name] = dense_features(model, x)
    tokens = tiny_tokens(c)
    ref["tokens"] = tokens
    with torch.no_grad():
        ref["text"] = model.encode_text(tokens)
    torch.save(ref, os.path.join(out, "tiny_ref.pt"))

    # ---- full-size ViT-B/16: weights not stored, drawn again by the Go test ----
    c = FULL
    raw = random_weights(c, FULL_SEED)
    model = build_model_from_openai_state_dict(release_dict(c, raw), cast_dtype=None).float().eval()
    del raw
    sd = model.state_dict()
    names = [n for n, _ in param_shapes(c)]
    assert list(sd.keys()) == names
    full = OrderedDict()
    full["weight_sums"] = torch.stack([sd[n].double().sum() for n in names])
    full["image"] = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(8))
    full["dense"] = dense_features(model, full["image"])
    texts = [affordance_prompt(a) for a in SEEN] + [exo_prompt(a) for a in EXO_SAMPLE]
    full["tokens"] = open_clip.tokenize(texts, context_length=c["ctx"])
    with torch.no_grad():
        full["text"] = model.encode_text(full["tokens"])
    torch.save(full, os.path.join(out, "full_ref.pt"))
    with open(os.path.join(out, "full_prompts.txt"), "w") as f:
        f.write("\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
