"""Reference data for package losses: the classification, pixel-contrastive and prototypical
contrastive losses of SelectiveCL, with their gradients, on fixed random inputs.

The three reference functions below are our own re-implementation, written from METHOD.md
sections 4.5, 4.9, 4.10 and 9.2-9.3 and from a line-by-line reading of the released code
(loss/loss.py: _compute_log_prob, PixelContrastiveLoss.forward, ContrastiveLoss.forward; and the
classification lines of models/locate.py Net.forward). They keep the released code's numerics on
purpose: the per-sample loop of the pixel loss, the NaN that an empty kept set produces, the
(1,)-shaped accumulator of the exocentric cross-entropy and its constant divisor 3.

Files (under --out):
  cases.json              one entry per case: kind, name, sizes, tau, inputs, which of them
                          require grad, and what the reference produced (NaN flags, counts)
  <case>.<tensor>.npy     inputs, outputs ("out", 0-d or (1,); for the pixel loss also
                          "out_nan_as_zero": samples without kept rows counted as 0) and
                          gradients ("grad_<input>")
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

BASE_TEMPERATURE = 0.07


# ---------------------------------------------------------------------------------------------
# Reference implementations.


def log_prob_rows(sim, denom_mask):
    """Row-wise log-probabilities: the row max (over every column) is subtracted without
    gradient; the log-sum-exp runs over the columns where denom_mask is 1."""
    shifted = sim - sim.max(dim=1, keepdim=True).values.detach()
    return shifted - torch.log((torch.exp(shifted) * denom_mask).sum(1, keepdim=True))


def classification_ref(logits_ego, logits_exo, y):
    ego = F.cross_entropy(logits_ego, y)
    exo = torch.zeros(1)  # the released code starts from torch.tensor([0.]): shape (1,)
    for n in range(logits_exo.shape[1]):
        exo = exo + F.cross_entropy(logits_exo[:, n], y)
    return ego, exo / 3.0  # constant 3, whatever E is


def pixel_ref(q, bin_ego, t_aff, f_ego, f_exo, num_exo, tau):
    """Returns the loss as the released code computes it (NaN when a sample keeps no anchor row),
    the same loss with such samples counted as 0 (METHOD 9.2, what affgd returns), and per
    sample whether the fg labels fell back to Bin and how many anchor rows were kept."""
    B, C, h, w = q.shape
    hw = h * w
    D = f_exo.shape[-1]
    t = F.normalize(t_aff, dim=-1)
    exo = F.normalize(f_exo.reshape(B, -1, D), dim=-1)
    exo_cos = torch.einsum("bnc,bc->bn", exo, t).reshape(B * num_exo, hw)
    rho = exo_cos.max(dim=1).values.reshape(B, num_exo).min(dim=1).values.unsqueeze(1)
    ego = F.normalize(f_ego.reshape(B, -1, D), dim=-1)
    ego_cos = torch.einsum("bnc,bc->bn", ego, t).reshape(B, hw)
    fg = (ego_cos > rho).float()  # released: rho < ego_similarity
    bin_flat = bin_ego.reshape(B, -1)
    feats = F.normalize(q, dim=1).permute(0, 2, 3, 1).reshape(B, hw, C)
    not_self = torch.ones(hw, hw) - torch.eye(hw)

    total = torch.zeros(())
    total_nan_as_zero = torch.zeros(())
    fallback, kept_counts = [], []
    for b in range(B):
        use_bin = bool(fg[b].sum() == 0)
        fallback.append(use_bin)
        lab = (bin_flat[b] if use_bin else fg[b]).reshape(-1, 1)
        pos = (lab == lab.T).float() * not_self
        sim = feats[b] @ feats[b].T / tau
        lp = log_prob_rows(sim, not_self)
        rows = pos.sum(1) != 0
        mean_pos = (pos[rows] * lp[rows]).sum(1) / pos[rows].sum(1)
        keep = bin_flat[b][rows] > 0.5
        kept_counts.append(int(keep.sum()))
        row_loss = -(tau / BASE_TEMPERATURE) * mean_pos[keep]
        sample_loss = row_loss.mean()  # NaN when keep is all false
        total = total + sample_loss
        if keep.any():
            total_nan_as_zero = total_nan_as_zero + sample_loss.detach()
    return total / B, total_nan_as_zero / B, fallback, kept_counts


def proto_ref(r_ego, r_exo, w_ego, w_exo, bg_ego, bg_exo, labels, num_exo, obj_ego, tau):
    B = labels.shape[0]

    def proto(r, m):
        return F.normalize((r * m.unsqueeze(1)).mean(dim=(2, 3)), dim=1)

    if obj_ego is None:
        anchor = F.normalize(r_ego.mean(dim=(2, 3)), dim=1)
    else:
        anchor = proto(r_ego, obj_ego)
    bank = torch.cat([proto(r_ego, w_ego), proto(r_ego, bg_ego), proto(r_exo, w_exo),
                      proto(r_exo, bg_exo)], dim=0)

    lab = labels.reshape(-1, 1)
    lab_exo = lab.repeat_interleave(num_exo, dim=0)
    same = (lab == lab.T).float()            # (B, B)
    same_exo = (lab == lab_exo.T).float()    # (B, B*E)
    not_self = torch.ones(B, B) - torch.eye(B)
    # Positives: other samples' ego_pos with the label, every exo_pos with the label.
    pos = torch.cat([same * not_self, torch.zeros(B, B), same_exo, torch.zeros_like(same_exo)], 1)
    # Denominator: the released code's float16 "neglect" mask times logits_mask (METHOD 9.3):
    # every ego_pos but one's own, ego_neg of same-label samples, every exo_pos, exo_neg of
    # same-label samples. Built in float16 like the released code, then used in float32.
    ignore = torch.cat([torch.ones(B, B), same, torch.ones_like(same_exo), same_exo], 1)
    neglect = torch.logical_or(pos.bool(), ignore.bool()).to(torch.float16)
    logits_mask = torch.cat([not_self, torch.ones(B, B + 2 * B * num_exo)], 1)
    denom = neglect * logits_mask

    sim = anchor @ bank.T / tau
    lp = log_prob_rows(sim, denom)
    rows = pos.sum(1) != 0
    mean_pos = (pos[rows] * lp[rows]).sum(1) / pos[rows].sum(1)
    loss = (-(tau / BASE_TEMPERATURE) * mean_pos).mean()  # NaN when no row has a positive
    return loss, B - int(rows.sum())


# ---------------------------------------------------------------------------------------------
# Inputs.


def aligned_features(g, n, hw, d, text, strength):
    """CLIP-like dense features: noise plus a per-position multiple of the text feature, so the
    cosines to the text spread from about 0 to close to 1 (pure noise would give ~±0.05)."""
    noise = torch.randn(n, hw, d, generator=g)
    amount = torch.rand(n, hw, 1, generator=g) * strength
    return noise + amount * text.unsqueeze(1)


def bin_from_ego(f_ego, t_aff, h, w, gamma2=0.6):
    """Bin = per-sample min-max normalised cos(F_ego, T_aff) (no eps) > gamma2, as locate.py's
    CLIP_ego_similarity_norm."""
    cos = torch.einsum("bnc,bc->bn", F.normalize(f_ego, dim=-1), F.normalize(t_aff, dim=-1))
    lo = cos.min(dim=1, keepdim=True).values
    hi = cos.max(dim=1, keepdim=True).values
    return ((cos - lo) / (hi - lo) > gamma2).float().reshape(-1, h, w)


class Writer:
    def __init__(self, out):
        self.out = out
        self.cases = []

    def save(self, case, name, t):
        a = t.detach().cpu().numpy()
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        np.save(os.path.join(self.out, f"{case}.{name}.npy"), a, allow_pickle=False)

    def finish(self):
        with open(os.path.join(self.out, "cases.json"), "w") as f:
            json.dump(self.cases, f, indent=1)


def classification_case(wr, name, seed, B, E, K, labels):
    g = torch.Generator().manual_seed(seed)
    le = (torch.randn(B, K, generator=g) * 2).requires_grad_()
    lx = (torch.randn(B, E, K, generator=g) * 2).requires_grad_()
    y = torch.tensor(labels, dtype=torch.int64)
    ego, exo = classification_ref(le, lx, y)
    (ego + exo.sum()).backward()
    for k, v in dict(logits_ego=le, logits_exo=lx, y=y, out_ego=ego, out_exo=exo,
                     grad_logits_ego=le.grad, grad_logits_exo=lx.grad).items():
        wr.save(name, k, v)
    wr.cases.append(dict(kind="classification", name=name, B=B, E=E, K=K,
                         ego_shape=list(ego.shape), exo_shape=list(exo.shape)))


def pixel_case(wr, name, seed, B, E, C, h, w, D=16, tau=0.5, edit=None, expect=None):
    g = torch.Generator().manual_seed(seed)
    hw = h * w
    t_aff = torch.randn(B, D, generator=g)
    f_ego = aligned_features(g, B, hw, D, t_aff, 0.6)
    f_exo = aligned_features(g, B * E, hw, D, t_aff.repeat_interleave(E, 0), 0.6)
    q = torch.randn(B, C, h, w, generator=g)
    bin_ego = bin_from_ego(f_ego, t_aff, h, w)
    if edit is not None:
        edit(locals())
    q.requires_grad_()
    loss, loss_nan_as_zero, fallback, kept = pixel_ref(q, bin_ego, t_aff, f_ego, f_exo, E, tau)
    loss.backward()
    empty = sum(1 for k in kept if k == 0)
    info = dict(kind="pixel", name=name, B=B, E=E, C=C, h=h, w=w, D=D, tau=tau,
                ref_nan=bool(torch.isnan(loss)), fallback=fallback, kept_rows=kept,
                empty_samples=empty, grad=["q"])
    if expect is not None:
        expect(info)
    for k, v in dict(q=q, bin_ego=bin_ego, t_aff=t_aff, f_ego=f_ego, f_exo=f_exo, out=loss,
                     out_nan_as_zero=loss_nan_as_zero, grad_q=q.grad).items():
        wr.save(name, k, v)
    wr.cases.append(info)


def proto_case(wr, name, seed, labels, E, C, h, w, tau=0.5, reliable=None, grad=("r_ego", "r_exo"),
               expect=None):
    g = torch.Generator().manual_seed(seed)
    B = len(labels)
    r_ego = torch.randn(B, C, h, w, generator=g)
    r_exo = torch.randn(B * E, C, h, w, generator=g)
    w_ego = torch.rand(B, h, w, generator=g)
    w_exo = torch.rand(B * E, h, w, generator=g)
    # K = W ⊙ G (epoch >= 1): a signed CAM-like factor, so the background 1 - K leaves [0, 1].
    bg_ego = 1 - w_ego * torch.randn(B, h, w, generator=g).clamp_min(0)
    bg_exo = 1 - w_exo * torch.randn(B * E, h, w, generator=g).clamp_min(0)
    s_ego = torch.rand(B, h, w, generator=g) * 2 - 1  # raw S_ego, signed
    obj_ego = None
    if reliable is not None:
        obj_ego = torch.ones(B, h, w)
        idx = [b for b in range(B) if reliable[b]]
        obj_ego[idx] = s_ego[idx]
    y = torch.tensor(labels, dtype=torch.int64)
    ins = dict(r_ego=r_ego, r_exo=r_exo, w_ego=w_ego, w_exo=w_exo, bg_ego=bg_ego, bg_exo=bg_exo)
    if obj_ego is not None:
        ins["obj_ego"] = obj_ego
    for k in grad:
        ins[k].requires_grad_()
    loss, empty_rows = proto_ref(ins["r_ego"], ins["r_exo"], ins["w_ego"], ins["w_exo"],
                                 ins["bg_ego"], ins["bg_exo"], y, E, ins.get("obj_ego"), tau)
    loss.backward()
    info = dict(kind="proto", name=name, B=B, E=E, C=C, h=h, w=w, tau=tau,
                ref_nan=bool(torch.isnan(loss)), empty_rows=empty_rows, grad=list(grad),
                has_obj=obj_ego is not None)
    if expect is not None:
        expect(info)
    for k, v in ins.items():
        wr.save(name, k, v)
        if k in grad:
            wr.save(name, "grad_" + k, v.grad)
    wr.save(name, "labels", y)
    wr.save(name, "out", loss)
    wr.cases.append(info)


def check(cond, msg):
    if not cond:
        raise SystemExit("gen_losses: " + msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    wr = Writer(out)

    # Classification: K = 36 (Seen) with repeated labels, B = 1, and E = 2 (still divided by 3).
    classification_case(wr, "cls_seen", 1, 8, 3, 36, [3, 3, 0, 35, 17, 3, 9, 17])
    classification_case(wr, "cls_b1", 2, 1, 3, 10, [7])
    classification_case(wr, "cls_e2", 3, 4, 2, 25, [0, 24, 5, 5])

    # Pixel loss, full size: 14x14, C = 384, CLIP width 512, repeated structure of a real step.
    def some_fg(info):
        check(not all(info["fallback"]) and not info["ref_nan"], f"{info['name']}: {info}")

    pixel_case(wr, "px_full", 10, 4, 3, 384, 14, 14, D=512, expect=some_fg)
    pixel_case(wr, "px_b1", 11, 1, 3, 8, 3, 3, expect=lambda i: check(not i["ref_nan"], str(i)))
    pixel_case(wr, "px_tau007", 12, 2, 3, 8, 4, 4, tau=0.07,
               expect=lambda i: check(not i["ref_nan"], str(i)))
    pixel_case(wr, "px_e1", 13, 3, 1, 6, 2, 3, expect=lambda i: check(not i["ref_nan"], str(i)))

    # A sample without fg position (rho ~ 1 because every exo image of sample 1 holds the text
    # feature itself): the fg labels fall back to Bin.
    def no_fg(v):
        B, E, hw = v["B"], v["E"], v["h"] * v["w"]
        for n in range(E):
            v["f_exo"][1 * E + n, n % hw] = v["t_aff"][1] * 5

    def check_no_fg(info):
        check(info["fallback"][1] and not info["fallback"][0] and not info["ref_nan"], str(info))

    pixel_case(wr, "px_nofg", 14, 3, 3, 8, 3, 4, edit=no_fg, expect=check_no_fg)

    # Empty kept sets (METHOD 9.2): sample 0 falls back to a Bin with a single 1 (that anchor's
    # label is unique: no positive); sample 2 has no Bin position at all (a constant S_ego makes
    # the released min-max NaN, hence Bin all 0). The reference loss is NaN.
    def empty(v):
        E, hw = v["E"], v["h"] * v["w"]
        for n in range(E):
            v["f_exo"][n, 0] = v["t_aff"][0] * 5
        v["bin_ego"][0].zero_()
        v["bin_ego"][0].view(-1)[hw // 2] = 1
        v["bin_ego"][2].zero_()

    def check_empty(info):
        check(info["ref_nan"] and info["fallback"][0] and info["empty_samples"] == 2
              and info["kept_rows"][1] > 0, str(info))

    pixel_case(wr, "px_empty", 15, 3, 3, 8, 3, 3, edit=empty, expect=check_empty)

    # Prototypical loss.
    def finite(info):
        check(not info["ref_nan"] and info["empty_rows"] == 0, str(info))

    proto_case(wr, "pr_full", 20, [4, 9, 4, 4, 30, 9, 1, 4], 3, 384, 14, 14,
               reliable=[1, 0, 1, 1, 0, 0, 1, 0], grad=("r_ego", "r_exo", "bg_ego", "bg_exo"),
               expect=finite)
    proto_case(wr, "pr_distinct", 21, [0, 1, 2], 3, 8, 3, 3, reliable=[0, 0, 0], expect=finite)
    proto_case(wr, "pr_b1", 22, [5], 3, 8, 2, 2, reliable=[1],
               grad=("r_ego", "r_exo", "bg_ego", "bg_exo"), expect=finite)
    proto_case(wr, "pr_all_grads", 23, [2, 2, 7], 2, 6, 3, 4, tau=0.07, reliable=[1, 0, 1],
               grad=("r_ego", "r_exo", "w_ego", "w_exo", "bg_ego", "bg_exo", "obj_ego"),
               expect=finite)
    proto_case(wr, "pr_no_obj", 24, [1, 3, 1], 3, 8, 3, 3, reliable=None, expect=finite)
    # E = 0: a row's only possible positives are same-label ego prototypes of other samples.
    proto_case(wr, "pr_e0_rep", 25, [1, 1, 0], 0, 8, 3, 3, reliable=[1, 0, 0],
               expect=lambda i: check(not i["ref_nan"] and i["empty_rows"] == 1, str(i)))
    proto_case(wr, "pr_e0_nan", 26, [1, 0], 0, 8, 3, 3, reliable=[0, 0],
               expect=lambda i: check(i["ref_nan"] and i["empty_rows"] == 2, str(i)))

    wr.finish()


if __name__ == "__main__":
    main()
