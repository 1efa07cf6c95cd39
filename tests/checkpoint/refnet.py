"""The released SelectiveCL model's module tree, built from affgd's PyTorch references.

The released training script saves `torch.save(model.state_dict(), path)` of its whole `Net`
(hynnsk/SelectiveCL models/locate.py). Its state dict is therefore, in this order:

  vit_model.*   the DINO ViT (models/dino/vision_transformer.py vit_small, num_classes=0: its
                head is nn.Identity and holds nothing): cls_token, pos_embed, patch_embed.proj.*,
                blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*, norm.*
  net.*         open_clip's CLIP built from OpenAI's weights (create_model('ViT-B/16',
                pretrained='openai'), fp32): positional_embedding, text_projection, logit_scale,
                visual.*, transformer.*, token_embedding.weight, ln_final.*; its attn_mask buffer
                is registered with persistent=False and is not saved
  aff_proj.*, aff_classifier.*, K_contrast_projection.*, pixel_contrast_projection.*,
  aff_ego_proj.*, aff_exo_proj.*   the head, BatchNorm running statistics and
                num_batches_tracked included

(`Net.gap` and the three loss modules hold no tensors.) `ReleasedNet` reproduces that tree with
our references -- the DINO ViT of tests/dino/gen_dino.py, open_clip's own CLIP from
build_model_from_openai_state_dict, and the head of tests/method/ref_step.py, whose module and
key names are the released ones -- so `ReleasedNet.state_dict()` has exactly the released keys
in the released order, and `load_state_dict(sd, strict=True)` is what loading a checkpoint into
the released code does. Nothing is copied from the released code.

Not a generator: gen_checkpoint.py and check_load.py import it.
"""
import importlib.util
import math
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True


def _import_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


R = _import_by_path("affgd_ref_step", os.path.join(HERE, "..", "method", "ref_step.py"))
gen_dino, gen_clip = R.gen_dino, R.gen_clip

# The head's submodules, in the order the released Net.__init__ creates them.
HEAD_MODULES = ("aff_proj", "aff_classifier", "K_contrast_projection", "pixel_contrast_projection",
                "aff_ego_proj", "aff_exo_proj")


class ReleasedNet(nn.Module):
    """vit_model (DINO), net (CLIP), then the head's modules, registered in the released order."""

    def __init__(self, dino, clip, head):
        super().__init__()
        self.vit_model = dino
        self.net = clip
        for name in HEAD_MODULES:
            setattr(self, name, getattr(head, name))


def clip_from_state_dict(sd):
    """open_clip's CLIP for an OpenAI-named state dict, float32 (as create_model(..., 'openai')
    with precision fp32 builds it), with the MHA fast path off as in the released code."""
    torch.backends.mha.set_fastpath_enabled(False)
    from open_clip.model import build_model_from_openai_state_dict
    model = build_model_from_openai_state_dict(dict(sd), cast_dtype=None).float()
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval()


def dino_for(sd):
    """An empty DINO ViT whose architecture fits the DINO state dict sd (keys without prefix);
    heads = width/64 as in DINO's published models."""
    dim, _, patch, _ = sd["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    side = math.isqrt(sd["pos_embed"].shape[1] - 1)
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / dim
    return gen_dino.ViT(dim, depth, dim // 64, patch, side * patch, mlp_ratio=mlp_ratio)


def sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def net_for(sd):
    """A ReleasedNet whose architecture fits the released-format state dict sd (not loaded)."""
    dino = dino_for(sub(sd, "vit_model."))
    clip = clip_from_state_dict(sub(sd, "net."))
    classes = sd["aff_classifier.weight"].shape[0]
    return ReleasedNet(dino, clip, R.Head(classes))


class Backbones(R.Backbones):
    """ref_step's Backbones over the modules of a ReleasedNet."""

    def __init__(self, net, divide, vocab):  # noqa: super().__init__ reads files; this takes modules
        self.dino = net.vit_model.eval()
        self.clip = net.net.eval()
        self.classnames = R.CLASSES[divide]
        self.tokenizer = R.SimpleTokenizer(vocab)
        self.context = self.clip.positional_embedding.shape[0]


def infer(net, batch, divide, vocab):
    """The released test_forward maps (cam, ree, rem) of ReleasedNet on batch, via ref_step.infer."""
    return R.infer(Backbones(net, divide, vocab), net, batch)
