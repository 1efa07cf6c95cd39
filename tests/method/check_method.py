"""Independent check of ref_step.py: the training step re-derived from METHOD.md alone, vectorised
and in float64, compared with the float32 dumps gen_method.py wrote.

ref_step.py follows the released code's structure (loops per sample and per anchor, boolean
indexing, the released modules). This script shares only the frozen backbones and the loaders
with it and writes the method part again from the spec's prose: local mean as an average pool
without padding counts, the exo indexing of METHOD 9.1 as "row n of flattened map b", K-means as
its own Lloyd loop (squared distances), BatchNorm, the losses and SGD as formulas. It then
compares every array, every dumped gradient, the BatchNorm buffers and parameters after the step.

Usage: check_method.py --data DIR [--case NAME ...]
Not run by `make testdata` (it is not a generator); run it by hand after changing ref_step.py.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, HERE)
import ref_step as R  # noqa: E402

D = torch.float64


def local_mean(x):
    """3x3 mean clipped to the grid = average pool with padding not counted."""
    s = x.shape
    y = F.avg_pool2d(x.reshape(-1, 1, s[-2], s[-1]), 3, stride=1, padding=1, count_include_pad=False)
    return y.reshape(s)


def l2n(x, dim):
    return x / x.norm(dim=dim, keepdim=True).clamp(min=1e-12)


def minmax(x, eps):
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(1).values.view(-1, *[1] * (x.dim() - 1))
    hi = flat.max(1).values.view(-1, *[1] * (x.dim() - 1))
    return (x - lo) / (hi - lo + eps)


def bn_train(x, weight, bias, rm, rv, calls):
    """BatchNorm2d in training mode (eps 1e-5, momentum 0.1); the running statistics updated
    `calls` times with the same batch statistics (unbiased variance)."""
    mu = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    n = x.numel() / x.shape[1]
    y = (x - mu[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
    y = y * weight[None, :, None, None] + bias[None, :, None, None]
    rm, rv = rm.clone(), rv.clone()
    for _ in range(calls):
        rm = 0.9 * rm + 0.1 * mu.detach()
        rv = 0.9 * rv + 0.1 * var.detach() * n / (n - 1)
    return y, rm, rv


def stack(x, p, prefix, buffers):
    """Conv3x3 -> BN -> ReLU twice. Run twice per step on the same input: the output is the same
    both times, the running statistics move twice."""
    for conv, bn in ((0, 1), (3, 4)):
        x = F.conv2d(x, p[f"{prefix}.{conv}.weight"], p[f"{prefix}.{conv}.bias"], padding=1)
        x, rm, rv = bn_train(x, p[f"{prefix}.{bn}.weight"], p[f"{prefix}.{bn}.bias"],
                             buffers[f"{prefix}.{bn}.running_mean"], buffers[f"{prefix}.{bn}.running_var"], 2)
        buffers[f"{prefix}.{bn}.running_mean"], buffers[f"{prefix}.{bn}.running_var"] = rm, rv
        buffers[f"{prefix}.{bn}.num_batches_tracked"] = buffers[f"{prefix}.{bn}.num_batches_tracked"] + 2
        x = torch.relu(x)
    return x


def conv1x1(x, p, name):
    return torch.einsum("bchw,kc->bkhw", x, p[name + ".weight"][:, :, 0, 0]) + p[name + ".bias"][None, :, None, None]


def lloyd(x, init):
    c = x[init].clone()
    for _ in range(300):
        d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        a = d2.argmin(1)
        onehot = F.one_hot(a, c.shape[0]).to(x.dtype).T
        cnt = onehot.sum(1, keepdim=True)
        new = torch.where(cnt > 0, onehot @ x / cnt.clamp(min=1), torch.zeros_like(c))
        err = ((new - c) ** 2).sum()
        c = new
        if err <= 1e-4:
            break
    return c


def method_step(bb, head_sd, batch, epoch, init, per_image):
    """METHOD section 4, float64. Returns (arrays, grads, buffers after the step)."""
    exo, ego, y = batch["exo"].to(D), batch["ego"].to(D), batch["label"].long()
    b, e = exo.shape[:2]
    with torch.no_grad():
        t_aff = bb.clip.encode_text(bb.tokenizer([R.gen_clip.affordance_prompt(bb.classnames[i]) for i in y]))
        t_exo = bb.clip.encode_text(bb.tokenizer([R.gen_clip.exo_prompt(bb.classnames[i]) for i in y]))
        f_exo = R.gen_clip.dense_features(bb.clip, exo.flatten(0, 1))
        f_ego = R.gen_clip.dense_features(bb.clip, ego)
        k_ego, attn = bb.dino.method(ego)
        k_exo, _ = bb.dino.method(exo.flatten(0, 1))
    h, w = ego.shape[-2] // 16, ego.shape[-1] // 16
    hw = h * w
    ta, to = l2n(t_aff, -1), l2n(t_exo, -1)
    cos_ego = (l2n(f_ego, -1) * ta[:, None]).sum(-1).reshape(b, h, w)
    fx = l2n(f_exo, -1).reshape(b, e, hw, -1)
    cos_exo_aff = (fx * ta[:, None, None]).sum(-1).reshape(b, e, h, w)
    cos_exo_obj = (fx * to[:, None, None]).sum(-1).reshape(b, e, h, w)
    s_ego = cos_ego
    s_exo = (local_mean(cos_exo_obj) * cos_exo_aff).reshape(b * e, h, w)
    # Saliency.
    cls = attn[:, :, 0, 1:]
    bin_heads = (cls > cls.mean(-1, keepdim=True)).to(D)[:, [0, 1, 3]].mean(1)
    sal = bin_heads - bin_heads.min(1, keepdim=True).values
    sal = sal / (sal.max(1, keepdim=True).values + 1e-15)
    sam_hard = (sal > sal.mean(1, keepdim=True)).to(D)
    # Head.
    p = {k: v.to(D).clone().requires_grad_(v.is_floating_point() and "running" not in k and "num_batches" not in k)
         for k, v in head_sd.items()}
    params = {k: v for k, v in p.items() if v.requires_grad}
    buffers = {k: v.detach().clone() for k, v in p.items() if not v.requires_grad}

    def aff_proj(tok):
        x = F.layer_norm(tok, (tok.shape[-1],), p["aff_proj.norm.weight"], p["aff_proj.norm.bias"], 1e-5)
        x = F.gelu(x @ p["aff_proj.fc1.weight"].T + p["aff_proj.fc1.bias"])
        x = x @ p["aff_proj.fc2.weight"].T + p["aff_proj.fc2.bias"]
        return x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)

    d_ego = k_ego.reshape(b, h, w, -1).permute(0, 3, 1, 2)
    d_exo = k_exo.reshape(b * e, h, w, -1).permute(0, 3, 1, 2)
    p_ego = stack(aff_proj(k_ego), p, "aff_ego_proj", buffers)
    p_exo = stack(aff_proj(k_exo), p, "aff_exo_proj", buffers)
    a_ego, a_exo = conv1x1(p_ego, p, "aff_classifier"), conv1x1(p_exo, p, "aff_classifier")
    r_ego, r_exo = conv1x1(p_ego, p, "K_contrast_projection"), conv1x1(p_exo, p, "K_contrast_projection")
    q = conv1x1(p_ego, p, "pixel_contrast_projection")
    logits_ego = a_ego.mean(dim=(2, 3))
    logits_exo = a_exo.mean(dim=(2, 3)).reshape(b, e, -1)
    l_ce_ego = F.cross_entropy(logits_ego, y)
    l_ce_exo = sum(F.cross_entropy(logits_exo[:, n], y) for n in range(e)) / 3
    g_ego = a_ego[torch.arange(b), y]
    g_exo = a_exo[torch.arange(b * e), y.repeat_interleave(e)]
    if epoch >= 1:
        g_ego, g_exo = torch.relu(g_ego), torch.relu(g_exo)
        m_exo = torch.relu(s_exo) * g_exo
    else:
        m_exo = s_exo
    m_exo = m_exo.detach()
    # Part discovery.
    c_dim = d_ego.shape[1]
    part_ego, soft_ego = s_ego.clone(), s_ego.clone()
    part_exo = torch.zeros(b, e, h, w, dtype=D)
    soft_exo = torch.zeros(b, e, h, w, dtype=D)
    reliable = torch.zeros(b, dtype=D)
    p_score = torch.full((b, 3), float("nan"), dtype=D)
    for i in range(b):
        cands = []
        for n in range(e):
            if per_image:
                mp, pos = m_exo[i * e + n].reshape(-1), torch.arange(hw)
            else:  # METHOD 9.1: row n of flattened exo map i, read as positions 0..w-1 of image (i, n)
                mp, pos = m_exo[i, n], torch.arange(w)
            mn = (mp - mp.min()) / (mp.max() - mp.min() + 1e-10)
            cands.append(d_exo[i * e + n].reshape(c_dim, hw)[:, pos[mn > 0.6]].T)
        cands = torch.cat(cands)
        ok = False
        if cands.shape[0] >= 3:
            c = l2n(lloyd(cands, init[i]), 1)
            sim = c @ l2n((d_ego[i] * s_ego[i][None]).reshape(c_dim, hw), 0)
            sn = minmax(sim, 1e-12)
            hard = (sn > sn.mean(1, keepdim=True)).to(D)
            inter = (hard * sam_hard[i]).sum(1)
            union = hard.sum(1) + sam_hard[i].sum() - inter
            pk = (inter / (hard.sum(1) + 1e-10) + sam_hard[i].sum() / (union + 1e-10)) / 2
            p_score[i] = pk
            if pk.max() >= 0.6:
                ok = True
                k = int(pk.argmax())
                reliable[i] = 1
                part_ego[i] = sim[k].reshape(h, w)
                part_exo[i] = (c[k] @ l2n(d_exo[i * e:(i + 1) * e].reshape(e, c_dim, hw), 1)).reshape(e, h, w)
                dist_exo = (d_exo[i * e:(i + 1) * e].permute(0, 2, 3, 1).reshape(-1, c_dim) - c[k]).norm(dim=1)
                dist_ego = (d_ego[i].permute(1, 2, 0).reshape(-1, c_dim) - c[k]).norm(dim=1)
                soft_exo[i] = torch.softmax(-dist_exo, 0).reshape(e, h, w)
                soft_ego[i] = torch.softmax(-dist_ego, 0).reshape(h, w)
        if not ok:
            for n in range(e):
                fb = s_exo[i * e + n] if per_image else s_exo[i, n][None, :].expand(h, w)
                part_exo[i, n] = fb
                soft_exo[i, n] = fb
    w_ego = (part_ego + soft_ego) / 2
    w_exo = ((part_exo + soft_exo) / 2).reshape(b * e, h, w)
    k_ego, k_exo = (w_ego * g_ego, w_exo * g_exo) if epoch >= 1 else (w_ego, w_exo)
    # Pixel contrast.
    scale = 0.5 / 0.07
    binm = (minmax(s_ego, 0.0) > 0.6).reshape(b, hw)
    rho = cos_exo_aff.reshape(b, e, hw).max(-1).values.min(-1).values
    fg = cos_ego.reshape(b, hw) > rho[:, None]
    lab = torch.where(fg.any(1, keepdim=True), fg, binm)
    qn = l2n(q, 1).reshape(b, -1, hw).transpose(1, 2)
    lg = qn @ qn.transpose(1, 2) / 0.5
    eye = torch.eye(hw, dtype=torch.bool)
    lse = torch.logsumexp(lg.masked_fill(eye, -math.inf), dim=2, keepdim=True)
    lp = lg - lse
    posm = (lab[:, :, None] == lab[:, None, :]) & ~eye
    npos = posm.sum(2)
    mean_pos = (lp * posm).sum(2) / npos.clamp(min=1)
    keep = (npos > 0) & binm
    per_sample = torch.stack([-(scale * mean_pos[i][keep[i]]).mean() if keep[i].any() else torch.zeros((), dtype=D)
                              for i in range(b)])
    l_pix = per_sample.sum() / b
    # Prototype contrast.
    def proto(rf, wm):
        return l2n((rf * wm[:, None]).mean(dim=(2, 3)), 1)
    anchor_w = torch.where(reliable[:, None, None] > 0, s_ego, torch.ones_like(s_ego))
    a = proto(r_ego, anchor_w)
    bank = torch.cat([proto(r_ego, w_ego), proto(r_ego, 1 - k_ego), proto(r_exo, w_exo), proto(r_exo, 1 - k_exo)])
    same = y[:, None] == y[None, :]
    same_exo = y[:, None] == y.repeat_interleave(e)[None, :]
    noself = ~torch.eye(b, dtype=torch.bool)
    pos = torch.cat([same & noself, torch.zeros_like(same), same_exo, torch.zeros_like(same_exo)], 1)
    den = torch.cat([noself, same, torch.ones_like(same_exo), same_exo], 1)
    lg = a @ bank.T / 0.5
    lp = lg - torch.logsumexp(lg.masked_fill(~den, -math.inf), dim=1, keepdim=True)
    l_proto = -(scale * (lp * pos).sum(1) / pos.sum(1)).mean()
    loss = l_ce_ego + l_ce_exo + l_pix + l_proto
    loss.backward()
    grads = {k: v.grad for k, v in params.items()}
    arrays = {"S_ego": s_ego, "S_exo": s_exo, "D_ego": d_ego, "D_exo": d_exo, "sam_hard": sam_hard,
              "reliable": reliable, "p_score": p_score, "W_ego": w_ego, "W_exo": w_exo,
              "logits_ego": logits_ego, "logits_exo": logits_exo, "L_ce_ego": l_ce_ego, "L_ce_exo": l_ce_exo,
              "L_pix": l_pix, "L_proto": l_proto, "loss": loss}
    # SGD, first step (momentum buffer = the first update), train.py's groups.
    after = dict(buffers)
    for k, v in params.items():
        lr = 1e-3 * ((10 if "weight" in k else 20) if "fc" in k else (1 if "weight" in k else 2))
        d = grads[k] + 5e-4 * v.detach()
        after[k] = v.detach() - lr * (d + 0.9 * d)
    return ({k: v.detach() for k, v in arrays.items()}, grads, after)


def rel(a, b):
    """max |a - b| / max |b| over the finite entries (the NaN patterns must agree)."""
    a, b = a.to(D), b.to(D)
    fin = torch.isfinite(b)
    assert torch.equal(fin, torch.isfinite(a)), "NaN pattern differs"
    if not fin.any():
        return 0.0
    return ((a - b)[fin].abs().max() / b[fin].abs().max().clamp(min=1e-30)).item()


# Gradients that are zero in exact arithmetic: a convolution's bias right before a training-mode
# BatchNorm (the normalisation removes any per-channel constant). Computed values are rounding
# noise (~1e-16 in float64, ~1e-8 in float32) and are compared absolutely.
ZERO_GRADS = ("aff_ego_proj.0.bias", "aff_ego_proj.3.bias", "aff_exo_proj.0.bias", "aff_exo_proj.3.bias")
# ref_step keeps some 0/1 maps in float32 (as the released code's .float() does), so p_score is
# float32 arithmetic even in a float64 run.
FLOAT32_IN_REF = {"p_score": 1e-6}


def ref_float64(data, cdir, args, batch, init):
    """ref_step.step run in float64 on the case's inputs."""
    torch.set_default_dtype(torch.float64)
    try:
        bb = R.Backbones(os.path.join(cdir, args["dino"]), os.path.join(cdir, args["clip"]), args["divide"],
                         os.path.join(cdir, args["vocab"]))
        bb.dino.double()
        bb.clip.double()
        head = R.load_head(os.path.join(cdir, args["head"]), len(R.CLASSES[args["divide"]])).double()
        b64 = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
        arrays, grads, stats, _ = R.step(bb, head, b64, args["epoch"], kmeans_init=init, seed=args["seed"],
                                         per_image_exo=args["per_image_exo"])
        after = {k: v.detach().clone() for k, v in head.state_dict().items()}
    finally:
        torch.set_default_dtype(torch.float32)
    return bb, arrays, grads, after, stats


def check_case(data, name, tol):
    cdir = os.path.join(data, "cases", name)
    with open(os.path.join(cdir, "args.json")) as f:
        args = json.load(f)
    head_sd = torch.load(os.path.join(cdir, args["head"]), weights_only=True)
    batch = torch.load(os.path.join(cdir, args["batch"]), weights_only=True)
    with open(os.path.join(cdir, "kmeans_init.json")) as f:
        init = {int(k): v for k, v in json.load(f).items()}
    bb, r_arrays, r_grads, r_after, r_stats = ref_float64(data, cdir, args, batch, init)
    arrays, grads, after = method_step(bb, head_sd, batch, args["epoch"], init, args["per_image_exo"])
    bad = {}
    # 1. Logic: ref_step in float64 against the independent derivation in float64.
    pairs = [(k, r_arrays[k], arrays[k]) for k in arrays] + [("grad/" + k, r_grads[k], grads[k]) for k in grads]
    pairs += [("param/" + k, r_after[k], after[k]) for k in after]
    worst_logic = 0.0
    for k, mine, theirs in pairs:
        if k.startswith("grad/") and k[5:] in ZERO_GRADS:
            d = max(mine.abs().max().item(), theirs.abs().max().item())
            if d > 1e-12:
                bad[k] = d
            continue
        r = rel(mine, theirs)
        if r > FLOAT32_IN_REF.get(k, tol):
            bad[k] = r
        if k not in FLOAT32_IN_REF:
            worst_logic = max(worst_logic, r)
    # 2. Informational: the float32 dump against the float64 derivation (float32 conditioning).
    ref = os.path.join(cdir, "ref")
    f32 = {}
    for k, _, theirs in pairs:
        path = os.path.join(ref, k + ".npy")
        if os.path.exists(path) and not (k.startswith("grad/") and k[5:] in ZERO_GRADS):
            f32[k] = rel(torch.from_numpy(np.load(path)), theirs)
    big = sorted(f32.items(), key=lambda kv: -kv[1])[:5]
    print(f"{name}: {r_stats['fallback']}; float64 ref vs derivation: {len(pairs)} tensors, worst {worst_logic:.1e}"
          f"{' BAD ' + str(bad) if bad else ''}; float32 dump vs float64 derivation, largest: "
          + ", ".join(f"{k} {v:.1e}" for k, v in big))
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--case", nargs="*")
    ap.add_argument("--tol", type=float, default=1e-9, help="float64 ref_step vs float64 derivation")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(False)
    cases = a.case or sorted(c for c in os.listdir(os.path.join(a.data, "cases"))
                             if json.load(open(os.path.join(a.data, "cases", c, "args.json")))["cmd"] == "step")
    bad = {}
    for c in cases:
        for k, v in check_case(a.data, c, a.tol).items():
            bad[f"{c}/{k}"] = v
    if bad:
        raise SystemExit(f"disagreements: {bad}")
    print(f"ref_step and the derivation from METHOD.md agree (float64, {a.tol:g})")


if __name__ == "__main__":
    main()
