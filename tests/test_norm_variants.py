"""Ghost BN, noisy BN and the SkipInit / plain / dropout model options: what makes each what it is."""
import pytest
import torch
from torch import nn

from bnstudy.config import ModelConfig, NormConfig
from bnstudy.data import normalize
from bnstudy.evaluation import (batch_independence_gap, batch_stats_accuracy, inference_modes,
                                precise_bn_, precise_bn_accuracy, shifted_test_accuracy)
from bnstudy.nets.resnet import build_model
from bnstudy.nets.norms import GhostBatchNorm2d, GroupNorm, NoisyBatchNorm2d, make_norm_layer
from bnstudy.evaluation import evaluate


def test_ghost_bn_normalizes_each_virtual_batch_like_bn():
    torch.manual_seed(0)
    x = torch.randn(12, 4, 5, 5) * 3 + torch.arange(12.0).view(12, 1, 1, 1)  # chunks differ in mean
    ghost = GhostBatchNorm2d(4, virtual_batch_size=4)
    y = ghost(x)
    for chunk, out in zip(x.split(4), y.split(4)):
        bn = nn.BatchNorm2d(4)
        assert torch.allclose(out, bn(chunk), atol=1e-5)
    # and not like BN over the whole batch
    assert not torch.allclose(y, nn.BatchNorm2d(4)(x), atol=1e-3)


def test_ghost_bn_running_stats_average_the_chunks_and_eval_is_plain_bn():
    x = torch.randn(8, 3, 4, 4) + torch.tensor([0.0, 5.0]).repeat_interleave(4).view(8, 1, 1, 1)
    ghost = GhostBatchNorm2d(3, virtual_batch_size=4, momentum=1.0)
    ghost(x)
    chunks = x.split(4)
    expect_mean = torch.stack([c.mean((0, 2, 3)) for c in chunks]).mean(0)
    expect_var = torch.stack([c.var((0, 2, 3)) for c in chunks]).mean(0)
    assert torch.allclose(ghost.running_mean, expect_mean, atol=1e-5)
    assert torch.allclose(ghost.running_var, expect_var, atol=1e-5)
    ghost.eval()
    bn = nn.BatchNorm2d(3).eval()
    bn.load_state_dict(ghost.state_dict())
    assert torch.equal(ghost(x), bn(x))


def test_ghost_bn_with_a_small_batch_is_bn():
    x = torch.randn(4, 3, 4, 4)
    assert torch.allclose(GhostBatchNorm2d(3, 16)(x), nn.BatchNorm2d(3)(x))


def test_noisy_bn_noise_changes_every_step_and_is_its_mean_in_eval():
    noisy = NoisyBatchNorm2d(6, noise_shift=0.5, noise_scale=1.5, seed=0)
    clean = nn.BatchNorm2d(6)
    x = torch.randn(16, 6, 4, 4)
    y1 = noisy(x)
    s1, b1 = noisy.last_noise
    y2 = noisy(x)
    s2, b2 = noisy.last_noise
    assert not torch.equal(s1, s2) and not torch.equal(b1, b2) and not torch.equal(y1, y2)
    assert torch.all((s1 >= 1) & (s1 <= 1.5)) and torch.all(b1.abs() <= 0.5)
    z = clean(x)
    assert torch.allclose(y1, z * s1.view(1, 6, 1, 1) + b1.view(1, 6, 1, 1), atol=1e-5)
    # the injected shift really moves the per-channel distribution
    assert (y1.mean((0, 2, 3)) - b1).abs().max() < 1e-4
    noisy.eval(); clean.eval()
    clean.load_state_dict(noisy.state_dict())
    # eval: no draw, the noise's mean (scale (1 + 1.5) / 2, shift 0), like inverted dropout
    assert torch.allclose(noisy(x), 1.25 * clean(x)) and torch.equal(noisy(x), noisy(x))


def test_noisy_bn_layers_have_distinct_reproducible_streams():
    cfg = NormConfig(name="noisy_bn", noise_seed=3)
    layer, _ = make_norm_layer(cfg)
    a, b = layer(4), layer(4)
    x = torch.randn(8, 4, 2, 2)
    a(x); b(x)
    assert not torch.equal(a.last_noise[0], b.last_noise[0])
    layer2, _ = make_norm_layer(cfg)
    a2 = layer2(4)
    a2(x)
    assert torch.equal(a.last_noise[0], a2.last_noise[0])


def test_noisy_bn_per_example_draws_iid_noise_from_a_distribution_that_changes_every_step():
    """noise_per=example (Santurkar et al.'s noise, as read here): each step one distribution for
    the layer, then a scale and a shift for every activation of every example; eval mode is the
    noise's mean, as per channel."""
    noisy = NoisyBatchNorm2d(6, noise_shift=0.5, noise_scale=1.5, seed=0, noise_per="example")
    clean = nn.BatchNorm2d(6)
    x = torch.randn(16, 6, 4, 4)
    y1 = noisy(x)
    s1, b1 = noisy.last_noise
    assert s1.shape == b1.shape == x.shape
    assert torch.allclose(y1, clean(x) * s1 + b1, atol=1e-5)
    # i.i.d. over examples and positions: one channel's draws differ across examples
    assert s1[:, 0].std() > 0 and b1[:, 0].std() > 0 and not torch.equal(s1[0], s1[1])
    # within the bounds: scale mean in [1, 1.5] +- up to 0.5, shift mean in [-0.5, 0.5] +- up to 0.5
    assert s1.min() >= 0.5 and s1.max() <= 2.0 and b1.abs().max() <= 1.0
    # the distribution itself changes from step to step: its means move
    means = []
    for _ in range(20):
        noisy(x)
        s, b = noisy.last_noise
        means.append((s.mean().item(), b.mean().item()))
    scale_means, shift_means = zip(*means)
    assert max(scale_means) - min(scale_means) > 0.1 and max(shift_means) - min(shift_means) > 0.2
    assert all(1 - 0.02 <= m <= 1.5 + 0.02 for m in scale_means)
    noisy.eval(); clean.eval()
    clean.load_state_dict(noisy.state_dict())
    assert torch.allclose(noisy(x), 1.25 * clean(x)) and torch.equal(noisy(x), noisy(x))
    # (N, C) features, as in the mlp
    f = NoisyBatchNorm2d(5, 0.5, 1.5, seed=1, noise_per="example")
    assert f(torch.randn(8, 5)).shape == (8, 5) and f.last_noise[0].shape == (8, 5)
    with pytest.raises(ValueError, match="noise_per"):
        NoisyBatchNorm2d(4, 0.5, 1.5, noise_per="batch")


def test_noisy_bn_example_is_a_registry_entry_with_reproducible_streams():
    """norm=noisy_bn_example builds per-example layers, each with its own stream from the seed;
    norm=noisy_bn stays per channel, drawing what it drew before the option existed."""
    cfg = NormConfig(name="noisy_bn_example", noise_seed=3)
    layer, bias = make_norm_layer(cfg)
    a, b = layer(4), layer(4)
    assert a.noise_per == b.noise_per == "example" and not bias
    x = torch.randn(8, 4, 2, 2)
    a(x); b(x)
    assert not torch.equal(a.last_noise[0], b.last_noise[0])
    a2 = make_norm_layer(cfg)[0](4)
    a2(x)
    assert torch.equal(a.last_noise[0], a2.last_noise[0])
    assert make_norm_layer(cfg, features=True)[0](4).noise_per == "example"  # the mlp's (N, C) features
    channel = make_norm_layer(NormConfig(name="noisy_bn", noise_seed=3))[0](4)
    assert channel.noise_per == "channel"
    channel(x)
    g = torch.Generator().manual_seed(3 * 1000)  # layer 0's stream: scale, then shift, 4 channels each
    assert torch.equal(channel.last_noise[0], 1 + 0.5 * torch.rand(4, generator=g))


def test_skipinit_blocks_start_as_identity_and_train():
    torch.manual_seed(0)
    m = build_model(ModelConfig(depth=20, skipinit=True), NormConfig(name="none"))
    block = m.layer1[0]
    x = torch.relu(torch.randn(2, 16, 8, 8))
    assert torch.equal(block(x), x)  # relu(0 * branch + x) = x for x >= 0
    out = m(torch.randn(4, 3, 32, 32)).sum()
    out.backward()
    assert block.skip_gain.grad is not None and block.skip_gain.grad.abs() > 0


def test_plain_blocks_have_no_shortcut_and_dropout_sits_in_blocks():
    torch.manual_seed(0)
    m = build_model(ModelConfig(depth=20, plain=True, dropout=0.5), NormConfig(name="bn"))
    block = m.layer1[0]
    x = torch.randn(2, 16, 8, 8)
    block.eval()
    assert torch.equal(block(x), block.relu2(block.norm2(block.conv2(block.relu1(block.norm1(block.conv1(x)))))))
    assert isinstance(block.dropout, nn.Dropout) and block.dropout.p == 0.5


def trained_bn_model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(depth=8), NormConfig(name="bn"))
    m.train()
    with torch.no_grad():
        for _ in range(5):
            m(torch.randn(32, 3, 32, 32))
    return m


def test_eval_mode_keeps_its_promise_and_probes_leave_state_alone():
    m = trained_bn_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    assert batch_independence_gap(m, x) < 1e-4
    batch_stats_accuracy(m, x, y, 8)
    shifted_test_accuracy(m, x, y, 0.5, 0.2)
    shifted_test_accuracy(m, x, y, 0.5, 0.2, batch_stats=True)
    metrics = inference_modes(m, x, y, x, [1, 4, 64], precise_bn_images=64)
    assert {"infer/acc_running.bs1", "infer/acc_batch.bs4", "infer/acc_precise",
            "infer/batch_independence_gap"} <= set(metrics)
    assert metrics["infer/acc_running.bs1"] == metrics["infer/acc_running.bs64"]  # eval mode: batch size is irrelevant
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and m.training


def test_precise_bn_is_the_average_over_training_batches():
    m = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.randint(0, 256, (400, 3, 32, 32), dtype=torch.uint8)
    precise_bn_(m, x, batch_size=100, max_images=400)
    from bnstudy.data import normalize
    xs = normalize(x)
    assert torch.allclose(m[0].running_mean, xs.mean((0, 2, 3)), atol=1e-4)
    assert m[0].momentum == 0.1


def test_precise_bn_with_augment_seed_averages_augmented_batches_as_training_draws_them():
    """A net trained on zero-padded crops is given the statistics of such crops, not of the
    images as they are (a crop's black border pulls the mean down)."""
    from bnstudy.data import augment

    m = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.full((400, 3, 32, 32), 200, dtype=torch.uint8)  # bright images: padding shows
    precise_bn_(m, x, batch_size=100, max_images=400, augment_seed=7)
    g = torch.Generator().manual_seed(7)
    by_hand = torch.stack([normalize(augment(x[i:i + 100], g)).mean((0, 2, 3)) for i in range(0, 400, 100)]).mean(0)
    assert torch.allclose(m[0].running_mean, by_hand, atol=1e-5)
    plain = nn.Sequential(nn.BatchNorm2d(3))
    precise_bn_(plain, x, batch_size=100, max_images=400)
    assert (m[0].running_mean < plain[0].running_mean - 0.1).all()


def test_a_run_recomputes_precise_bn_over_augmented_batches_unless_told_not_to(monkeypatch):
    """run.after_training passes the run's seed as augment_seed when the run augments and
    evaluation.precise_bn_augment holds; otherwise precise BN sees the images as they are."""
    import bnstudy.run as run_mod
    from conftest import compose_config

    seen = []
    monkeypatch.setattr(run_mod, "precise_bn_accuracy", lambda *a, **k: seen.append(a[-1]) or 0.5)
    model = build_model(ModelConfig(depth=8), NormConfig(name="bn"))
    data = type("D", (), {"x_test": None, "y_test": None, "x_train": None})()
    for augment, flag, expected in ((True, True, 3), (True, False, None), (False, True, None)):
        cfg = compose_config(["seed=3", f"data.augment={augment}", "evaluation.precise_bn=true",
                              f"evaluation.precise_bn_augment={flag}"])
        run_mod.after_training(cfg, model, data, 0.4)
        assert seen[-1] == expected


def test_precise_bn_with_ghost_bn_averages_whole_batches_not_ghost_batches():
    """Precise statistics are population statistics (Wu & Johnson 2021): ghost BN layers are
    recomputed over whole batches, as plain BN would be, and keep their ghost size after."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(depth=8), NormConfig(name="ghost_bn", ghost_batch_size=8))
    plain = build_model(ModelConfig(depth=8), NormConfig(name="bn"))
    plain.load_state_dict(m.state_dict())
    seen = []
    m.norm1.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    x = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8)
    precise_bn_(m, x, batch_size=20, max_images=60)  # 3 forwards of 20 (ghost batches would be 8, 8, 4)
    precise_bn_(plain, x, batch_size=20, max_images=60)
    assert len(seen) == 3 and all(len(inp) == 20 for inp in seen)
    assert torch.allclose(m.norm1.running_mean, torch.stack([inp.mean((0, 2, 3)) for inp in seen]).mean(0), atol=1e-5)
    assert torch.allclose(m.norm1.running_var, torch.stack([inp.var((0, 2, 3)) for inp in seen]).mean(0),
                          rtol=1e-4, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(m.state_dict().values(), plain.state_dict().values()))
    assert m.norm1.num_batches_tracked == 3 and m.norm1.momentum == 0.1 and m.norm1.virtual_batch_size == 8


def test_precise_bn_accuracy_leaves_the_model_as_it_was():
    m = trained_bn_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    acc = precise_bn_accuracy(m, x, y, x, images=64, eval_batch_size=32)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items()) and m.training
    precise_bn_(m, x, max_images=64)
    assert acc == evaluate(m, x, y, 32)[1]


def test_eval_mode_forwards_in_cache_sized_chunks_and_train_mode_keeps_its_test_batch(monkeypatch):
    """Eval mode's logits do not depend on the batch, so a CPU forwards at most CPU_EVAL_CHUNK
    images at a time (same loss and accuracy); train mode's batch statistics are the test batch
    asked for, so it keeps that size."""
    import bnstudy.evaluation as ev

    m = trained_bn_model()
    sizes = []
    m.norm1.register_forward_pre_hook(lambda mod, args: sizes.append(len(args[0])))
    x = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (50,))
    whole = evaluate(m, x, y, 50)
    monkeypatch.setattr(ev, "CPU_EVAL_CHUNK", 16)
    sizes.clear()
    chunked = evaluate(m, x, y, 50)
    assert sizes == [16, 16, 16, 2] and chunked[1] == whole[1] and chunked[0] == pytest.approx(whole[0], rel=1e-5)
    sizes.clear()
    assert evaluate(m, x, y, 50, cpu_chunk=20)[1] == whole[1] and sizes == [20, 20, 10]  # the cap, named per call
    sizes.clear()
    evaluate(m, x, y, 50, train_mode=True)
    assert sizes == [50]


def test_ghost_bn_at_the_batch_size_computes_what_bn_does():
    """norm_batch's reference arm: ghost size = SGD batch is plain BN in training mode (outputs,
    gradients and running statistics), so the study's 128 is BN at batch 128."""
    torch.manual_seed(0)
    ghost = build_model(ModelConfig(depth=8), NormConfig(name="ghost_bn", ghost_batch_size=16)).train()
    bn = build_model(ModelConfig(depth=8), NormConfig(name="bn")).train()
    bn.load_state_dict(ghost.state_dict())
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for m in (ghost, bn):
        torch.nn.functional.cross_entropy(m(x), y).backward()
    assert torch.equal(ghost(x), bn(x))
    assert all(torch.equal(a, b) for a, b in zip(ghost.state_dict().values(), bn.state_dict().values()))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ghost.parameters(), bn.parameters()))


def test_batch_statistics_undo_a_per_batch_gain():
    """A gain applied to a whole test batch: with the batch's own statistics the first BN sees
    the same normalized input as without it, so the predictions are those of the clean batch."""
    m = trained_bn_model()
    x = torch.randint(40, 160, (64, 3, 32, 32), dtype=torch.uint8)  # x 1.5 stays inside 0-255
    with torch.no_grad():
        y = m.eval()(normalize(x)).argmax(1)  # labels = the clean predictions
    m.train()
    clean = shifted_test_accuracy(m, x, y, 0.0, 0.0, batch_size=64)
    running = shifted_test_accuracy(m, x, y, 0.5, 0.0, batch_size=64, seed=3)
    batch = shifted_test_accuracy(m, x, y, 0.5, 0.0, batch_size=64, seed=3, batch_stats=True)
    same_batch = shifted_test_accuracy(m, x, y, 0.0, 0.0, batch_size=64, batch_stats=True)
    assert clean == 1.0 and batch == same_batch and 0 <= running <= 1


def test_ghost_bn_under_bf16_autocast_keeps_fp32_running_statistics():
    """Under the fast path (bf16 autocast) the chunks are bf16; the running statistics stay
    fp32 buffers and move (a bf16 batch mean once failed lerp_ into them)."""
    from bnstudy.nets.norms import GhostBatchNorm2d

    torch.manual_seed(0)
    layer = GhostBatchNorm2d(4, virtual_batch_size=2).train()
    x = torch.randn(8, 4, 3, 3) * 2 + 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.nn.functional.conv2d(x, torch.eye(4).view(4, 4, 1, 1)))  # a bf16 input, as after a conv
    assert out.shape == x.shape
    assert layer.running_mean.dtype == layer.running_var.dtype == torch.float32
    assert layer.running_mean.abs().sum() > 0 and layer.num_batches_tracked.item() == 1


def chunked_ghost_bn(layer: GhostBatchNorm2d, x):
    """The first GhostBatchNorm2d, kept as the reference: a batch_norm per chunk, the running
    statistics from each chunk's fp32 mean and unbiased variance."""
    chunks = x.split(layer.virtual_batch_size)
    out = torch.cat([torch.nn.functional.batch_norm(c, None, None, layer.weight, layer.bias, True, 0.0, layer.eps)
                     for c in chunks])
    with torch.no_grad():
        mean = torch.stack([c.float().mean(dim=(0, 2, 3)) for c in chunks]).mean(0)
        var = torch.stack([c.float().var(dim=(0, 2, 3), unbiased=True) for c in chunks]).mean(0)
        layer.num_batches_tracked += 1
        factor = 1.0 / layer.num_batches_tracked.item() if layer.momentum is None else layer.momentum
        layer.running_mean.lerp_(mean, factor)
        layer.running_var.lerp_(var, factor)
    return out


def ghost_pair(channels, g, momentum=0.1, affine=True):
    torch.manual_seed(0)
    new = GhostBatchNorm2d(channels, g, momentum=momentum, affine=affine)
    if affine:
        with torch.no_grad():
            new.weight.uniform_(0.5, 1.5)
            new.bias.uniform_(-0.5, 0.5)
    new.running_mean.uniform_(-1, 1)
    new.running_var.uniform_(0.5, 2)
    ref = GhostBatchNorm2d(channels, g, momentum=momentum, affine=affine)
    ref.load_state_dict(new.state_dict())
    return new, ref


def run_twice(layer, forward, x, grad):
    """Two training steps' forwards (the running statistics move twice) and the second's gradients."""
    forward(layer, x * 0.5 + 1)
    x = x.detach().clone().requires_grad_(True)
    out = forward(layer, x)
    out.backward(grad)
    grads = [x.grad] + ([layer.weight.grad, layer.bias.grad] if layer.affine else [])
    return out, grads, layer.running_mean.clone(), layer.running_var.clone()


@pytest.mark.parametrize("path", ["loop", "one_call"])
@pytest.mark.parametrize("n,g,channels,channels_last,momentum,affine", [
    (16, 4, 16, True, 0.1, True), (16, 2, 32, True, None, True), (24, 8, 32, False, 0.1, True),
    (16, 4, 32, True, 0.1, False), (10, 4, 16, True, 0.1, True)])  # the last: chunks of 4, 4, 2
def test_ghost_bn_matches_the_chunked_implementation_in_fp32(path, n, g, channels, channels_last, momentum, affine):
    if path == "one_call" and n % g:
        pytest.skip("one call needs equal chunks; the loop takes a smaller last chunk")
    new, ref = ghost_pair(channels, g, momentum, affine)
    new._one_call = lambda x: path == "one_call"  # both paths, whatever the dispatch would pick here
    x = torch.randn(n, channels, 6, 5) * 2 + torch.arange(n * channels).view(n, channels, 1, 1) % 7
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    out, grads, rm, rv = run_twice(new, GhostBatchNorm2d.forward, x, grad)
    out_ref, grads_ref, rm_ref, rv_ref = run_twice(ref, chunked_ghost_bn, x, grad)
    assert torch.allclose(out, out_ref, rtol=1e-5, atol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(grads, grads_ref))
    assert torch.allclose(rm, rm_ref, rtol=1e-6, atol=1e-6) and torch.allclose(rv, rv_ref, rtol=1e-6, atol=1e-6)
    assert new.num_batches_tracked == ref.num_batches_tracked == 2
    if channels_last and path == "one_call":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels,g", [(16, 2), (32, 2), (64, 4), (32, 16)])
def test_ghost_bn_matches_the_chunked_implementation_under_bf16_autocast(channels, g):
    """The fast path: a bf16 channels_last activation (from a conv), fp32 parameters and statistics."""
    new, ref = ghost_pair(channels, g)
    conv = nn.Conv2d(channels, channels, 1, bias=False).to(memory_format=torch.channels_last)
    x = (torch.randn(32, channels, 8, 8) * 2 + 1).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(32, channels, 8, 8).bfloat16().contiguous(memory_format=torch.channels_last)

    def under_autocast(layer, inp):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(conv(inp)) if layer is new else chunked_ghost_bn(layer, conv(inp))

    out, grads, rm, rv = run_twice(new, under_autocast, x, grad)
    out_ref, grads_ref, rm_ref, rv_ref = run_twice(ref, under_autocast, x, grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert new._one_call(conv(x)) == (channels >= 32)  # the dispatch the study's runs get
    assert out.dtype == out_ref.dtype == torch.bfloat16
    assert torch.allclose(out.float(), out_ref.float(), rtol=1e-2, atol=2e-2)
    assert all(torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2) for a, b in zip(grads, grads_ref))
    assert rm.dtype == rv.dtype == torch.float32
    assert torch.allclose(rm, rm_ref, rtol=1e-5, atol=1e-5) and torch.allclose(rv, rv_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [8, 1])
def test_group_norm_layer_computes_what_torch_group_norm_does(groups, monkeypatch):
    """norm=gn hands a channels_last input to torch's NCHW kernel (8 groups of 4 channels here; ln's
    one group of 32 keeps channels_last): same values and gradients as nn.GroupNorm."""
    torch.manual_seed(0)
    ours, layer = GroupNorm(groups, 32), nn.GroupNorm(groups, 32)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5); ours.bias.uniform_(-0.5, 0.5)
    layer.load_state_dict(ours.state_dict())
    assert isinstance(make_norm_layer(NormConfig(name="gn"))[0](32), GroupNorm)
    for memory_format in (torch.channels_last, torch.contiguous_format):
        x = (torch.randn(8, 32, 6, 5) * 3 + 1).contiguous(memory_format=memory_format)
        grad = torch.randn(8, 32, 6, 5)
        results = []
        for m in (ours, layer):
            m.zero_grad()
            xi = x.clone().requires_grad_(True)
            out = m(xi)
            out.backward(grad)
            results.append((out, xi.grad, m.weight.grad, m.bias.grad))
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(*results))
        assert results[0][0].is_contiguous(memory_format=memory_format)
    seen, group_norm = [], torch.nn.functional.group_norm
    monkeypatch.setattr(torch.nn.functional, "group_norm",
                        lambda x, *a: seen.append(x.is_contiguous()) or group_norm(x, *a))
    ours(torch.randn(8, 32, 6, 5).contiguous(memory_format=torch.channels_last))
    assert seen == [groups == 8]  # the kernel gets NCHW memory where a group has < 16 channels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = torch.randn(8, 32, 6, 5).bfloat16().contiguous(memory_format=torch.channels_last)
        a, b = ours(xb), layer(xb)
    assert a.dtype == b.dtype == torch.bfloat16
    assert torch.allclose(a.float(), b.float(), rtol=1e-2, atol=2e-2)


# ---------------------------------------------------------------- BN on running statistics (running_bn)

def _warmed_running_bn(burn_in=3, steps=5, affine_init=True):
    """A RunningBatchNorm2d past its burn-in, its running statistics moved by `steps` batches."""
    from bnstudy.nets.norms import RunningBatchNorm2d

    torch.manual_seed(0)
    layer = RunningBatchNorm2d(4, burn_in=burn_in)
    if affine_init:
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5); layer.bias.uniform_(-0.5, 0.5)
    for _ in range(steps):
        layer(torch.randn(16, 4, 5, 5) * 2 + 1)
    return layer


def test_running_bn_is_bn_during_its_burn_in():
    import copy

    from bnstudy.nets.norms import RunningBatchNorm2d

    torch.manual_seed(0)
    ours, bn = RunningBatchNorm2d(4, burn_in=3), nn.BatchNorm2d(4)
    for _ in range(3):
        x = torch.randn(16, 4, 5, 5) * 2 + 1
        assert torch.equal(ours(x), bn(x))
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), bn.state_dict().values()))
    x = torch.randn(16, 4, 5, 5) * 2 + 1
    before = copy.deepcopy(ours).eval()
    out = ours(x)  # the 4th step: the running statistics of the first 3
    assert torch.allclose(out, before(x), atol=1e-5) and not torch.allclose(out, bn(x), atol=1e-3)


def test_running_bn_after_burn_in_normalizes_each_example_by_the_running_statistics_alone():
    """Past its burn-in a training step's output is eval mode's with the statistics before the
    step, so an example's output does not change when the rest of its batch does; the running
    statistics still move towards the batch's, as BatchNorm2d's do (unbiased variance)."""
    import copy

    layer = _warmed_running_bn()
    x = torch.randn(16, 4, 5, 5) * 2 + 1
    others = x.clone()
    others[1:] = torch.randn(15, 4, 5, 5) * 5 - 3
    a, b, ev = copy.deepcopy(layer), copy.deepcopy(layer), copy.deepcopy(layer).eval()
    out = a(x)
    assert torch.allclose(out, ev(x), atol=1e-5)
    assert torch.allclose(b(others)[0], out[0], atol=1e-5) and not torch.allclose(b.running_mean, a.running_mean)
    m = layer.momentum
    assert torch.allclose(a.running_mean, (1 - m) * layer.running_mean + m * x.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(a.running_var, (1 - m) * layer.running_var + m * x.var((0, 2, 3)), atol=1e-5)
    assert a.num_batches_tracked == layer.num_batches_tracked + 1
    # plain BN's training output does depend on the rest of the batch
    bn = nn.BatchNorm2d(4)
    assert not torch.allclose(bn(others)[0], bn(x)[0], atol=1e-3)


def test_running_bn_backward_is_batch_renormalization_with_r_and_d_held_constant():
    """Ioffe 2017: y = gamma * (r * (x - mu_B) / sigma_B + d) + beta, r and d constants in the
    backward: the gradient flows through the batch's mean and variance, scaled by r."""
    import copy

    layer = _warmed_running_bn()
    ref = copy.deepcopy(layer)
    x = (torch.randn(16, 4, 5, 5) * 2 + 1).requires_grad_(True)
    grad = torch.randn(16, 4, 5, 5)
    layer(x).backward(grad)
    xr = x.detach().clone().requires_grad_(True)
    mu, var = xr.mean((0, 2, 3), keepdim=True), xr.var((0, 2, 3), unbiased=False, keepdim=True)
    sigma_b = torch.sqrt(var + ref.eps)
    sigma = torch.sqrt(ref.running_var + ref.eps).view(1, 4, 1, 1)
    r, d = (sigma_b / sigma).detach(), ((mu - ref.running_mean.view(1, 4, 1, 1)) / sigma).detach()
    y = ref.weight.view(1, 4, 1, 1) * ((xr - mu) / sigma_b * r + d) + ref.bias.view(1, 4, 1, 1)
    y.backward(grad)
    for ours, theirs in ((x.grad, xr.grad), (layer.weight.grad, ref.weight.grad), (layer.bias.grad, ref.bias.grad)):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # not the gradient of normalizing by constants: that one has a component along the batch mean
    assert not torch.allclose(x.grad, grad * (ref.weight.view(1, 4, 1, 1) / sigma), atol=1e-3)


def test_running_bn_eval_mode_and_state_dict_are_batchnorm2ds():
    from bnstudy.nets.norms import RunningBatchNorm2d

    layer = _warmed_running_bn()
    bn = nn.BatchNorm2d(4)
    bn.load_state_dict(layer.state_dict())  # strict: the same keys, shapes and buffers
    x = torch.randn(8, 4, 5, 5)
    assert torch.equal(layer.eval()(x), bn.eval()(x))
    back = RunningBatchNorm2d(4, burn_in=3)
    back.load_state_dict(bn.state_dict())
    assert torch.equal(back.eval()(x), bn(x))


def test_running_bn_from_the_registry_trains_a_resnet_under_bf16_autocast():
    """norm=running_bn builds the layer with norm.burn_in; a ResNet-20 takes steps past the burn-in
    in bf16 with channels_last, its outputs bf16 and its running statistics fp32."""
    from bnstudy.nets.norms import RunningBatchNorm2d

    cfg = NormConfig(name="running_bn", burn_in=2)
    factory, conv_bias = make_norm_layer(cfg)
    assert isinstance(factory(16), RunningBatchNorm2d) and factory(16).burn_in == 2 and conv_bias is False
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=20), cfg).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    layers = [m for m in model.modules() if isinstance(m, RunningBatchNorm2d)]
    for _ in range(4):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert len(layers) == 19 and all(int(m.num_batches_tracked) == 4 for m in layers)
    assert all(m.running_var.dtype == torch.float32 for m in layers)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.norm1(model.conv1(x))
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
