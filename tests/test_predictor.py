"""LesionSegmenter.predict: lung-box crops and the whole-slice mode give the network's own calls."""
import numpy as np
import torch

from covseg.infer.predictor import LesionSegmenter
from covseg.models import build_model


def _segmenter(tmp_path):
    torch.manual_seed(0)
    net = build_model("anamnet", num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    return LesionSegmenter(tmp_path / "w.pt", model="anamnet", backend="torch"), net


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
    both = LesionSegmenter([tmp_path / "w.pt", tmp_path / "v.pt"], model="anamnet", backend="torch")
    batch = _images()
    x = torch.from_numpy(batch)[:, None]
    with torch.inference_mode():
        expected = (net(x) + other(x)) / 2
    np.testing.assert_allclose(both.logits(batch), expected.numpy(), atol=1e-5)
    members = [m["sha256"] for m in both.meta["members"]]
    assert members[0] == one.meta["sha256"] and len(set(members)) == 2
    assert both.meta["sha256"] not in members  # the ensemble is named by its own hash


def test_evaluate_takes_several_weights_as_one_ensemble(tmp_path, cli, data_dir):
    _segmenter(tmp_path)
    w = tmp_path / "w.pt"
    code, single, _ = cli("evaluate", "--weights", w, "--model", "anamnet", "--limit", "3")
    assert code == 0 and "abnormal" in single
    code, twice, _ = cli("evaluate", "--weights", w, w, "--model", "anamnet", "--limit", "3")
    assert code == 0 and twice == single  # the mean of one network twice is that network
