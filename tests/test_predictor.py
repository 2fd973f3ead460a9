"""LesionSegmenter.predict: lung-box crops and the whole-slice mode give the network's own calls.

Exact comparisons pin the fp32 path (`precision="fp32"`), so they hold on every CPU; the bf16
path is forced in its own test (bf16 runs everywhere, emulated where the CPU lacks it) and held
to a bf16 tolerance.
"""
import numpy as np
import pytest
import torch

from covseg.infer.predictor import LesionSegmenter
from covseg.models import build_model
from covseg.runtime import has_fast_bf16, resolve_precision


def _segmenter(tmp_path, precision="fp32"):
    torch.manual_seed(0)
    net = build_model("anamnet", num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    return LesionSegmenter(tmp_path / "w.pt", model="anamnet", backend="torch",
                           precision=precision), net


def _images():
    return np.random.default_rng(0).random((3, 48, 64)).astype(np.float32)


def test_whole_slices_give_the_full_argmax(tmp_path):
    seg, net = _segmenter(tmp_path)
    images = _images()
    with torch.inference_mode():
        expected = net(torch.from_numpy(images)[:, None]).argmax(1).numpy()
    np.testing.assert_array_equal(seg.predict(images, None), expected)


def test_lung_masked_slices_are_labelled_inside_the_lungs_only(tmp_path):
    seg, net = _segmenter(tmp_path)
    images = _images()
    lungs = np.zeros(images.shape, bool)
    lungs[0, 10:30, 5:40] = True  # a box that is not a multiple of 16: padded with context
    lungs[2, 20:21, 50:52] = True
    labels = seg.predict(images, lungs)
    assert (labels[~lungs] == 0).all()
    assert set(np.unique(labels[lungs])) <= {1, 2}
    assert (labels[1] == 0).all()  # a slice without lungs is not run
    box = images[0, 4:36, 0:48]  # slice 0's lung box (20 x 35) grown to 32 x 48 around it
    with torch.inference_mode():
        logits = net(torch.from_numpy(np.ascontiguousarray(box))[None, None])[0].numpy()
    inside = lungs[0, 4:36, 0:48]
    expected = np.where(logits[1] > logits[2], 1, 2)[inside]
    np.testing.assert_array_equal(labels[0, 4:36, 0:48][inside], expected)


def test_mirror_averages_the_network_on_the_mirrored_batch(tmp_path):
    seg, net = _segmenter(tmp_path)
    seg.mirror = True
    batch = _images()
    x = torch.from_numpy(batch)[:, None]
    with torch.inference_mode():
        expected = (net(x) + net(x.flip(-1)).flip(-1)) / 2
    np.testing.assert_allclose(seg.logits(batch), expected.numpy(), atol=1e-5)


def test_an_ensemble_averages_its_members_and_names_them(tmp_path):
    one, net = _segmenter(tmp_path)
    torch.manual_seed(1)
    other = build_model("anamnet", num_classes=3).eval()
    torch.save(other.state_dict(), tmp_path / "v.pt")
    both = LesionSegmenter([tmp_path / "w.pt", tmp_path / "v.pt"], model="anamnet", backend="torch",
                           precision="fp32")
    batch = _images()
    x = torch.from_numpy(batch)[:, None]
    with torch.inference_mode():
        expected = (net(x) + other(x)) / 2
    np.testing.assert_allclose(both.logits(batch), expected.numpy(), atol=1e-5)
    members = [m["sha256"] for m in both.meta["members"]]
    assert members[0] == one.meta["sha256"] and len(set(members)) == 2
    assert both.meta["sha256"] not in members  # the ensemble is named by its own hash


def test_bf16_path_stays_within_bf16_rounding_of_fp32(tmp_path):
    fp32, net = _segmenter(tmp_path, "fp32")
    bf16, _ = _segmenter(tmp_path, "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    batch = _images()
    exact, rounded = fp32.logits(batch), bf16.logits(batch)
    assert not np.array_equal(exact, rounded)  # the bf16 path really ran
    scale = float(np.abs(exact).max())
    assert np.abs(exact - rounded).max() < 0.05 * scale  # bf16 keeps 8 bits of mantissa


@pytest.mark.parametrize("no_bf16", ["", "1"])
def test_auto_precision_follows_the_cpu_and_can_be_turned_off(tmp_path, monkeypatch, no_bf16):
    monkeypatch.setenv("COVSEG_NO_BF16", no_bf16)
    seg, _ = _segmenter(tmp_path, "auto")
    assert seg.precision == ("bf16" if has_fast_bf16() else "fp32") == resolve_precision("auto")
    if no_bf16:
        assert seg.precision == "fp32"


def test_the_device_is_the_gpu_only_where_there_is_one(monkeypatch):
    """Training and the torch backend run on compute_device(): the CPU on a machine without a GPU
    whatever COVSEG_DEVICE says short of "cuda", which then fails loudly instead of training on the
    CPU while a record claims a GPU."""
    import torch

    from covseg.errors import InputError
    from covseg.runtime import compute_device, cpu_description, machine_description

    for choice in ("auto", "cpu"):
        monkeypatch.setenv("COVSEG_DEVICE", choice)
        expected = "cuda" if torch.cuda.is_available() and choice != "cpu" else "cpu"
        assert compute_device().type == expected
    monkeypatch.setenv("COVSEG_DEVICE", "cpu")
    assert machine_description() == cpu_description()
    monkeypatch.setenv("COVSEG_DEVICE", "tpu")
    with pytest.raises(InputError, match="choose one of auto, cpu, cuda"):
        compute_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("COVSEG_DEVICE", "cuda")
        with pytest.raises(InputError, match="sees no GPU"):
            compute_device()


def test_evaluate_takes_several_weights_as_one_ensemble(tmp_path, cli, data_dir):
    _segmenter(tmp_path)
    w = tmp_path / "w.pt"
    code, single, _ = cli("evaluate", "--weights", w, "--model", "anamnet", "--limit", "3")
    assert code == 0 and "abnormal" in single
    code, twice, _ = cli("evaluate", "--weights", w, w, "--model", "anamnet", "--limit", "3")
    assert code == 0 and twice == single  # the mean of one network twice is that network


def test_flips_average_the_four_flips_so_a_mirrored_slice_gives_the_mirrored_logits(tmp_path):
    seg, net = _segmenter(tmp_path)
    batch = _images()
    x = torch.from_numpy(batch)[:, None]
    with torch.inference_mode():
        views = [((), net(x))] + [(d, net(x.flip(d)).flip(d)) for d in ((-1,), (-2,), (-2, -1))]
    expected = sum(v for _, v in views) / 4
    np.testing.assert_allclose(seg.logits(batch, flips=True), expected.numpy(), atol=1e-5)
    for axes in ((-1,), (-2,), (-2, -1)):  # mirrored, upside down, a half turn
        turned = np.ascontiguousarray(np.flip(batch, axes))
        np.testing.assert_allclose(seg.logits(turned, flips=True),
                                   np.flip(seg.logits(batch, flips=True), axes), atol=1e-4)
