"""NIfTI images and masks: 2D images, 3D volumes as slices, intensities, errors, predict's output."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcvae.data import DataError, FolderDataset, build_dataset, read_image
from segcvae.data.nifti import NiftiImage, to_uint8, volume_from_slices
from tests.conftest import SHARED_DATA, data_cfg

nib = pytest.importorskip("nibabel")

AFFINE = np.array(
    [[0.8, 0.0, 0.0, -40.0], [0.0, 0.9, 0.1, 12.5], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1.0]]
)
CLASSES = ["background", "lesion"]


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _scan(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """MRI-like float intensities with a few extreme voxels (which the percentile rule clips)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(400.0, 120.0, shape).astype(np.float32)
    data.flat[:3] = [-5000.0, 9000.0, 12000.0]
    return data


def _rater(shape: tuple[int, ...], rater: int, slices: tuple[int, ...] = ()) -> np.ndarray:
    """A box whose extent differs per rater; in a volume, only in the given z slices."""
    mask = np.zeros(shape, np.uint8)
    box = (slice(1, 3 + rater), slice(2, 4))
    if len(shape) == 2:
        mask[box] = 1
    else:
        for z in slices:
            mask[box + (z,)] = 1
    return mask


def _percentile_uint8(plane: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """The documented rule, written out independently: clip to the 0.5 / 99.5 percentiles of the
    whole file, scale to 0..255."""
    low, high = np.percentile(volume, [0.5, 99.5])
    scaled = (np.clip(plane.astype(np.float64), low, high) - low) / (high - low)
    return np.rint(scaled * 255).astype(np.uint8)


def _cases_2d(root: Path, n: int = 4, raters: int = 3, shape=(10, 7)) -> Path:
    for k in range(n):
        case = root / f"case{k:02d}"
        _save(case / "image.nii.gz", _scan(shape, k))
        for r in range(raters):
            _save(case / f"task01_seg{r + 1:02d}.nii.gz", _rater(shape, r))
    return root


def _volume_set(root: Path, shape=(6, 5, 4), fg_slices=(1, 2)) -> Path:
    _save(root / "vol" / "image.nii.gz", _scan(shape))
    for r in range(2):
        _save(root / "vol" / f"seg{r}.nii", _rater(shape, r, fg_slices))
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("vol\n")
    return root


def _folder(root: Path, split: str = "train", **kw) -> FolderDataset:
    kw.setdefault("class_names", CLASSES)
    kw.setdefault("layout", "per_image")
    return FolderDataset(root, split, **kw)


def test_2d_images_and_rater_masks_read_as_a_viewer_shows_them(tmp_path: Path) -> None:
    root = _cases_2d(tmp_path / "set")
    ds = _folder(root, val_ratio=0.0, test_ratio=0.0)
    assert [it[0] for it in ds.items] == ["case00", "case01", "case02", "case03"]
    item = ds[1]
    scan = _scan((10, 7), 1)
    # (X, Y) = (10, 7) -> rows along y, columns along x: (H, W) = (7, 10)
    assert item["image"].shape == (7, 10, 3) and item["masks"].shape == (3, 7, 10)
    assert np.array_equal(item["image"][..., 0], _percentile_uint8(scan.T, scan))
    assert np.array_equal(item["image"][..., 0], item["image"][..., 2])
    for r in range(3):
        assert np.array_equal(item["masks"][r], _rater((10, 7), r).T)
    votes = np.stack([_rater((10, 7), r) for r in range(3)]).sum(0)
    assert np.array_equal(item["mask"], (votes >= 2).T.astype(np.int64))
    assert read_image(root / "case01" / "image.nii.gz").shape == (7, 10, 3)


def test_pairs_and_per_rater_layouts_take_nifti_stems(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for k in range(3):
        _save(root / "images" / f"scan{k}.nii.gz", _scan((8, 8), k))
        _save(root / "masks" / f"scan{k}.nii.gz", _rater((8, 8), k))
        _save(root / "raters" / "ann" / f"scan{k}.nii", _rater((8, 8), 0))
        _save(root / "raters" / "bob" / f"scan{k}.nii.gz", _rater((8, 8), 1))
    pairs = FolderDataset(root, "train", class_names=CLASSES, val_ratio=0, test_ratio=0)
    assert [it[0] for it in pairs.items] == ["scan0", "scan1", "scan2"]
    assert np.array_equal(pairs[2]["mask"], _rater((8, 8), 2).T)
    per_rater = FolderDataset(
        root, "train", masks="raters", layout="per_rater", class_names=CLASSES, val_ratio=0,
        test_ratio=0,
    )  # fmt: skip
    assert per_rater[0]["masks"].shape == (2, 8, 8)
    assert np.array_equal(per_rater[0]["masks"][1], _rater((8, 8), 1).T)


def test_a_volume_is_one_item_per_slice_along_the_axis(tmp_path: Path, caplog) -> None:
    shape = (6, 5, 4)
    root = _volume_set(tmp_path / "set", shape, fg_slices=(1, 2))
    scan = _scan(shape)
    with caplog.at_level(logging.INFO, logger="segcvae"):
        ds = _folder(root, splits_dir="splits", mask_pattern="seg*")
    assert "1 NIfTI volumes -> 4 slices along axis 2" in caplog.text
    assert [it[0] for it in ds.items] == ["vol:z000", "vol:z001", "vol:z002", "vol:z003"]
    item = ds[2]
    assert item["id"] == "vol:z002" and item["masks"].shape == (2, 5, 6)
    # every slice is scaled by the percentiles of the whole volume
    assert np.array_equal(item["image"][..., 0], _percentile_uint8(scan[:, :, 2].T, scan))
    assert np.array_equal(item["masks"][1], _rater(shape, 1, (1, 2))[:, :, 2].T)
    assert ds[0]["masks"].sum() == 0

    along_x = _folder(root, splits_dir="splits", mask_pattern="seg*", nifti_axis=0)
    assert len(along_x) == 6 and along_x.items[5][0] == "vol:x005"
    first = along_x[1]  # remaining axes (y, z): (H, W) = (4, 5)
    assert first["masks"].shape == (2, 4, 5)
    assert np.array_equal(first["masks"][0], _rater(shape, 0, (1, 2))[1].T)

    marked = _folder(root, splits_dir="splits", mask_pattern="seg*", nifti_slices="foreground")
    assert [it[0] for it in marked.items] == ["vol:z001", "vol:z002"]
    assert all(marked[i]["masks"].sum() > 0 for i in range(2))
    assert np.array_equal(marked[1]["image"], item["image"])


def test_intensity_rules(tmp_path: Path) -> None:
    root = _volume_set(tmp_path / "set")
    scan = _scan((6, 5, 4))
    ds = _folder(root, splits_dir="splits", mask_pattern="seg*", nifti_intensity="minmax")
    planes = np.stack([ds[k]["image"][..., 0] for k in range(4)])
    assert planes.min() == 0 and planes.max() == 255  # over the volume, not per slice
    low, high = scan.min(), scan.max()
    expected = np.rint((scan[:, :, 3].T - low) / (high - low) * 255).astype(np.uint8)
    assert np.abs(planes[3].astype(int) - expected).max() <= 1
    raw = _folder(root, splits_dir="splits", mask_pattern="seg*", nifti_intensity="none")
    with pytest.raises(DataError, match=r"vol/image.nii.gz: intensities .*nifti_intensity=none"):
        raw[0]
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5) * 8  # (X, Y), values 0..232
    _save(root / "vol" / "image.nii.gz", np.repeat(grey[..., None], 4, axis=2))
    assert np.array_equal(raw[0]["image"][..., 0], grey.T)  # 8-bit values kept as they are
    with pytest.raises(ValueError, match="nifti_intensity"):
        _folder(root, splits_dir="splits", nifti_intensity="zscore")
    assert to_uint8(np.full((2, 2), 7.0), 7.0, 7.0).max() == 0  # a constant image


def test_mask_errors_name_the_file(tmp_path: Path) -> None:
    root = _cases_2d(tmp_path / "set", n=2, raters=2)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("case00\ncase01\n")
    soft = _rater((10, 7), 0).astype(np.float32)
    soft[1, 2] = 0.5
    _save(root / "case01" / "task01_seg02.nii.gz", soft)
    ds = _folder(root, splits_dir="splits")
    with pytest.raises(DataError, match=r"case01/task01_seg02.nii.gz: mask has non-integer values"):
        ds[1]
    thresholded = _folder(root, splits_dir="splits", binary_threshold=1)
    assert thresholded[1]["masks"][1, 2, 1] == 0 and thresholded[1]["masks"][1, 2, 2] == 1
    _save(root / "case01" / "task01_seg02.nii.gz", _rater((10, 7), 0) * 1.0)  # whole floats: fine
    assert np.array_equal(ds[1]["masks"][1], _rater((10, 7), 0).T)

    moved = AFFINE.copy()
    moved[0, 3] += 4.0
    _save(root / "case01" / "task01_seg02.nii.gz", _rater((10, 7), 0), moved)
    with pytest.raises(DataError, match=r"case01/task01_seg02.nii.gz: mask affine differs"):
        ds[1]
    _save(root / "case01" / "task01_seg02.nii.gz", _rater((7, 10), 0))
    with pytest.raises(DataError, match=r"task01_seg02.nii.gz: mask shape \(7, 10\) differs"):
        ds[1]
    skipping = _folder(root, splits_dir="splits", on_bad_sample="skip")
    assert skipping[1]["id"] == "case00"
    negative = _rater((10, 7), 0).astype(np.int16)
    negative[0, 0] = -1
    _save(root / "case01" / "task01_seg02.nii.gz", negative)
    with pytest.raises(DataError, match=r"task01_seg02.nii.gz: class values \[-1\]"):
        ds[1]
    _save(root / "case00" / "image.nii.gz", np.zeros((4, 4, 2, 3), np.float32))
    with pytest.raises(DataError, match=r"case00/image.nii.gz: NIfTI data of shape \(4, 4, 2, 3\)"):
        ds[0]


def test_foreground_slices_check_the_grid_when_indexing(tmp_path: Path) -> None:
    root = _volume_set(tmp_path / "set")
    _save(root / "vol" / "seg1.nii", _rater((6, 5, 3), 1, (1,)))
    with pytest.raises(DataError, match=r"vol/seg1.nii: mask shape \(6, 5, 3\) differs"):
        _folder(root, splits_dir="splits", mask_pattern="seg*", nifti_slices="foreground")


def test_without_nibabel_the_error_names_the_file_and_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _cases_2d(tmp_path / "set", n=3, raters=1)
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel -> ImportError
    with pytest.raises(DataError) as e:
        _folder(root, val_ratio=0.0, test_ratio=0.0)
    assert "image.nii.gz" in str(e.value) and 'pip install -e ".[medical]"' in str(e.value)


def test_predict_writes_nifti_on_the_input_grid(tmp_path: Path) -> None:
    from PIL import Image

    from segcvae.api import Predictor
    from segcvae.cli import predict_main
    from tests.api.conftest import NUM_CLASSES, write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.pt")
    flat = _save(tmp_path / "in" / "flat.nii.gz", _scan((40, 30)))
    vol_path = _save(tmp_path / "in" / "head.nii", _scan((20, 24, 3, 1), 2))
    out = tmp_path / "out"
    argv = ["--ckpt", str(ckpt), "--input", str(flat), str(vol_path), "--out", str(out)]
    assert predict_main([*argv, "--samples", "3", "--device", "cpu", "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    for stem in ("flat", "head"):
        assert {f"{stem}_{k}.nii.gz" for k in ("mask", "foreground", "uncertainty")} <= names
    assert {"flat_mask.png", "head_z000_mask.png", "head_z002_overlay.png"} <= names

    written = nib.load(str(out / "flat_mask.nii.gz"))
    assert written.shape == (40, 30) and np.allclose(written.affine, AFFINE)
    assert written.get_data_dtype() == np.uint8
    picture = np.asarray(Image.open(out / "flat_mask.png"))  # (H, W) = (30, 40)
    assert np.array_equal(np.asarray(written.dataobj).T, picture)
    vol = nib.load(str(out / "head_mask.nii.gz"))
    assert vol.shape == (20, 24, 3, 1) and np.allclose(vol.affine, AFFINE)
    slice2 = np.asarray(Image.open(out / "head_z002_mask.png"))
    assert np.array_equal(np.asarray(vol.dataobj)[:, :, 2, 0].T, slice2)
    fg = np.asarray(nib.load(str(out / "head_foreground.nii.gz")).dataobj)
    ent = np.asarray(nib.load(str(out / "head_uncertainty.nii.gz")).dataobj)
    assert fg.dtype == np.float32 and 0 <= fg.min() and fg.max() <= 1
    assert (
        ent.shape == (20, 24, 3, 1) and 0 <= ent.min() and ent.max() <= np.log(NUM_CLASSES) + 1e-5
    )

    # along another axis: the checkpoint's data.folder.nifti_axis decides
    from segcvae.engine.predict import predict_nifti

    predictor = Predictor.from_checkpoint(ckpt, device="cpu", batch_size=2)
    predictor.config.data.folder.nifti_axis = 0
    other = tmp_path / "other"
    other.mkdir()
    paths = predict_nifti(predictor, vol_path, other, "head", samples=2)
    assert len([p for p in paths if p.name.endswith("_mask.png")]) == 20  # one per x slice
    assert (other / "head_x019_mask.png").is_file()
    assert nib.load(str(other / "head_mask.nii.gz")).shape == (20, 24, 3, 1)


def test_volume_from_slices_inverts_reading(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    path = _save(tmp_path / "v.nii.gz", data)
    image = NiftiImage(path)
    for axis in range(3):
        planes = [image.read(k, axis) for k in range(image.num_slices(axis))]
        assert np.array_equal(volume_from_slices(planes, image, axis), data)
        in_memory = [image.slice_of(data, k, axis) for k in range(image.num_slices(axis))]
        assert all(np.array_equal(a, b) for a, b in zip(planes, in_memory, strict=True))


# --------------------------------------------------------------------- the real QUBIQ copy
QUBIQ = SHARED_DATA / "qubiq_brain_growth"


@pytest.fixture(scope="module")
def qubiq_nifti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PNG copy of QUBIQ converted to the release's NIfTI layout (one (X, Y) file per PNG)."""
    if not QUBIQ.is_dir():
        pytest.skip(f"QUBIQ brain growth not found at {QUBIQ}")
    out = tmp_path_factory.mktemp("qubiq_nii")
    for png in sorted(QUBIQ.glob("case*/*.png")):
        picture = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)  # (H, W) uint8
        target = out / png.parent.name / (png.stem + ".nii.gz")
        _save(target, np.ascontiguousarray(picture.T), np.eye(4))  # voxel (x, y) = pixel (col, row)
    (out / "splits").mkdir()
    for split in ("train", "val", "test"):
        (out / "splits" / f"{split}.txt").write_bytes(
            (QUBIQ / "splits" / f"{split}.txt").read_bytes()
        )
    return out


def test_qubiq_as_nifti_gives_the_same_items_as_the_png_copy(qubiq_nifti: Path) -> None:
    common = dict(name="folder", folder_layout="per_image", folder_splits="splits")
    common.update(folder_classes=["background", "brain_growth"])
    png = data_cfg(root=str(QUBIQ), folder_image_pattern="image.png", **common)
    nii = data_cfg(root=str(qubiq_nifti), nifti_intensity="none", **common)
    for split in ("train", "val", "test"):
        a, b = build_dataset(png, split), build_dataset(nii, split)
        assert len(a) == len(b) > 0
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert x["id"] == y["id"]
            assert np.array_equal(x["image"], y["image"])
            assert x["masks"].shape == (7, 128, 128) and np.array_equal(x["masks"], y["masks"])
            assert np.array_equal(x["mask"], y["mask"])
    scaled = build_dataset(data_cfg(root=str(qubiq_nifti), **common), "test")[0]["image"]
    assert scaled.max() == 255  # the default percentile rule stretches the 8-bit copy
