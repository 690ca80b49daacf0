"""Real-video metrics (issue 16, Deliver 4) and prep's face parsing: SyncNet's layout, scoring rule and crop
geometry, the ArcFace / Inception / I3D loaders, region masks by label name - with random-weight models of
the right structure (tests/support/tiny_models.py), nothing downloaded."""
import numpy as np
import pytest
import torch

from common import syncnet as sn
from common.errors import DataError
from tests.support import tiny_models


def test_syncnet_has_syncnet_python_layout_and_widths_from_the_weights(tmp_path):
    full = sn.SyncNet(tiny_models.syncnet_shapes()).eval()
    names = set(full.state_dict())
    for key in ("netcnnaud.0.weight", "netcnnaud.18.weight", "netcnnaud.19.running_var", "netfcaud.3.bias",
                "netcnnlip.0.weight", "netcnnlip.18.weight", "netcnnlip.19.num_batches_tracked", "netfclip.1.running_mean"):
        assert key in names, key
    assert sum(p.numel() for p in full.parameters()) == 13_631_616  # syncnet_python's S(1024)
    with torch.no_grad():  # 5 frames of 224 x 224 and a 13 x 20 MFCC window each reduce to one 1024 vector
        assert full.forward_lip(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)
        assert full.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
    path = tiny_models.syncnet(tmp_path / "narrow.model")
    narrow = sn.load_syncnet(path)
    assert narrow.netcnnlip[0].out_channels == 4 and narrow.netfclip[3].out_features == 8
    (tmp_path / "bad.model").write_bytes(b"not a state dict")
    with pytest.raises(DataError, match="bad.model: not a syncnet_python state dict"):
        sn.load_syncnet(tmp_path / "bad.model")
    with pytest.raises(DataError, match="eval.real.syncnet: .*missing.model does not exist"):
        sn.load_syncnet(tmp_path / "missing.model")


class _Brightness:
    """A SyncNet stand-in whose embeddings are the standardised window of mouth brightness (video) and of
    MFCC energy c0 (audio), so a known audio/video lag must come out as the offset."""

    @staticmethod
    def _z(x):
        return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)

    def forward_lip(self, x):  # (N, 3, 5, 224, 224) -> (N, 5)
        return self._z(x.mean((1, 3, 4)))

    def forward_aud(self, x):  # (N, 1, 13, 20) -> (N, 5): c0 per video frame (4 MFCC steps each)
        return self._z(x[:, 0, 0].reshape(len(x), 5, 4).mean(2))


@pytest.mark.parametrize("lag", [3, -2, 0])
def test_sync_offset_is_the_frames_the_video_lags_the_audio(lag):
    rng = np.random.default_rng(0)
    T = 60
    loud = rng.random(T + 10) > 0.5  # per-frame loudness pattern
    wave = np.concatenate([rng.standard_normal(640) * (0.5 if on else 0.01) for on in loud[5:5 + T]]).astype(np.float32)
    shown = loud[5 - lag:5 - lag + T]  # frame t shows the loudness of audio frame t - lag
    crops = np.where(shown[:, None, None, None], 200, 40).astype(np.uint8) * np.ones((1, 224, 224, 3), np.uint8)
    scores = sn.sync_scores(_Brightness(), crops, wave, vshift=6)
    assert scores["offset"] == lag and scores["sync_c"] > 0.5


def test_mfcc_and_crop_follow_syncnet_python():
    assert sn.mfcc(np.zeros(16000, np.float32) + 1e-3).shape == (13, 99)  # 100 steps/s, 25 ms windows
    frames = np.zeros((3, 100, 120, 3), np.uint8)
    frames[:, 40:60, 50:70] = 255  # a 20 px white face at centre (60, 50)
    boxes = np.array([[50, 40, 70, 60]] * 3, np.float32)
    track = sn.smooth_track(boxes, 120, 100)
    assert np.allclose(track[0], [60, 50, 10])
    crop = sn.crop_faces(frames, track, crop_scale=0.4, size=224)
    # rows y - s .. y + 1.8 s (28 px), columns x - 1.4 s .. x + 1.4 s (28 px): the face fills the top-centre
    assert crop.shape == (3, 224, 224, 3) and crop[0, 40, 112].min() == 255 and crop[0, 200, 112].max() == 0
    gaps = boxes.copy()
    gaps[1] = np.nan  # a frame without a face is interpolated; no face at all -> the whole frame
    assert np.allclose(sn.smooth_track(gaps, 120, 100)[1], [60, 50, 10])
    assert np.allclose(sn.smooth_track(np.full((3, 4), np.nan), 120, 100)[0], [60, 50, 60])


def test_arcface_inception_i3d_from_local_files(tmp_path):
    from evaluation.metrics import frechet_distance
    from evaluation.real_models import I3D, ArcFace, Inception

    models = tiny_models.all_metric_models(tmp_path)
    frames = np.random.default_rng(0).integers(0, 256, (20, 64, 80, 3), dtype=np.uint8)
    boxes = np.tile(np.array([[20, 10, 50, 45]], np.float32), (20, 1))
    emb = ArcFace(models["arcface"]).embed(frames, boxes)
    assert emb.shape == (20, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])  # different faces, different embeddings
    inception = Inception(models["inception"]).features(frames)
    assert inception.shape == (20, 32)
    assert frechet_distance(inception, inception) < 1e-6 < frechet_distance(inception, inception * 1.5)
    assert I3D(models["i3d"]).features([frames[:16], frames[4:]]).shape == (2, 16)
    (tmp_path / "broken.onnx").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="broken.onnx: not a usable ArcFace ONNX model"):
        ArcFace(str(tmp_path / "broken.onnx"))
    with pytest.raises(DataError, match=r"i3d.pt.*not a usable Inception"):  # wrong call convention
        Inception(models["i3d"])


def test_region_masks_follow_label_names_not_indices(tmp_path):
    from realvideo.faces import FaceParser, face_boxes, masks_from_labels, read_regions, region_label_ids

    ids = region_label_ids({0: "background", 3: "Skin", 1: "upper_lip", 2: "Hair", 4: "left_eye", 5: "mouth"})
    assert ids == {"eyes": [4], "mouth": [1, 5], "hair": [2], "face": [1, 3, 4, 5]}
    with pytest.raises(DataError, match=r"name none of region\(s\) \['eyes', 'mouth'\]"):
        region_label_ids({0: "background", 1: "skin", 2: "hair"})
    labels = np.zeros((2, 8, 8), np.int16)
    labels[0, 2:6, 3:7], labels[0, 4, 4] = 3, 5
    masks = masks_from_labels(labels, ids)
    assert masks.shape == (2, 4, 8, 8) and masks[0, 1].sum() == 1 and masks[0, 3].sum() == 16
    boxes = face_boxes(masks[:, 3])
    assert boxes[0].tolist() == [3, 2, 7, 6] and np.isnan(boxes[1]).all()
    parser = FaceParser(str(tiny_models.face_parser(tmp_path / "parser")), size=64, every=2)
    frames = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    summary, boxes = parser.analyse(frames, tmp_path / "clip.regions.npz")
    stored, stored_boxes = read_regions(tmp_path / "clip.regions.npz")
    assert stored.shape == (5, 4, 48, 64) and stored.dtype == bool and stored_boxes.shape == (5, 4)
    assert np.array_equal(stored_boxes, boxes, equal_nan=True) and (stored[1] == stored[0]).all()  # every 2nd frame parsed, held in between
    assert summary["regions"] == ["eyes", "mouth", "hair", "face"] and 0 <= summary["face_frames"] <= 1
    (tmp_path / "bad.regions.npz").write_bytes(b"xx")
    with pytest.raises(DataError, match="bad.regions.npz: unreadable region masks"):
        read_regions(tmp_path / "bad.regions.npz")


def test_prep_sync_check_realigns_audio_and_the_filter_reads_faces_and_sync(tmp_path):
    from common.audio_io import load_audio, save_wav
    from realvideo.annotate import filter_reason
    from realvideo.config import PrepConfig
    from realvideo.lipsync import SyncCheck, shift_audio

    assert shift_audio(np.arange(5.0), 2).tolist() == [0, 0, 0, 1, 2]
    assert shift_audio(np.arange(5.0), -2).tolist() == [2, 3, 4, 0, 0]
    rng = np.random.default_rng(1)
    T, lag = 60, 2
    loud = rng.random(T + 10) > 0.5
    wave = np.concatenate([rng.standard_normal(640) * (0.5 if on else 0.01) for on in loud[5:5 + T]]).astype(np.float32)
    frames = np.where(loud[5 - lag:5 - lag + T, None, None, None], 200, 40).astype(np.uint8) * np.ones((1, 32, 32, 3),
                                                                                                      np.uint8)
    prep = PrepConfig(syncnet=str(tiny_models.syncnet(tmp_path / "s.model")), max_sync_offset=3)
    check = SyncCheck(prep, 25.0, 16000)
    check.model = _Brightness()  # a stand-in that sees the planted lag
    wav = tmp_path / "clip.wav"
    save_wav(wav, wave, 16000)
    stored = load_audio(wav, 16000)  # as 16-bit PCM stores it
    measured = check(frames, wave, None, wav)
    assert measured["sync_offset"] == lag and measured["audio_shift_frames"] == lag
    realigned = load_audio(wav, 16000)
    assert check(frames, realigned, None, tmp_path / "again.wav")["sync_offset"] == 0  # in sync after the shift
    original = tmp_path / "clip.orig.wav"
    assert np.array_equal(load_audio(original, 16000), stored)  # segment's audio kept for a redo
    check.cfg = PrepConfig(syncnet=prep.syncnet, realign_audio=False)
    assert "audio_shift_frames" not in check(frames, wave, None, wav)  # realignment switched off: audio restored
    assert not original.exists() and np.array_equal(load_audio(wav, 16000), stored)
    base = {"speech_ratio": 1.0, "motion": 0.1}
    cfg = PrepConfig(min_face_size=0.2, min_sync_conf=1.0, max_sync_offset=3)
    assert filter_reason(base | {"face_frames": 0.2, "face_size": 0.5}, cfg)[0] == "no_face"
    assert filter_reason(base | {"face_frames": 1.0, "face_size": 0.1}, cfg)[0] == "face_too_small"
    assert filter_reason(base | {"sync_offset": -5, "sync_c": 5.0}, cfg)[0] == "av_offset"
    assert filter_reason(base | {"sync_offset": 1, "sync_c": 0.5}, cfg)[0] == "low_sync"
    assert filter_reason(base | {"face_frames": 1.0, "face_size": 0.5, "sync_offset": 1, "sync_c": 2.0}, cfg) is None


def test_pose_keypoints_by_name_motion_and_hand_discs(tmp_path):
    from realvideo.pose import PoseEstimator, hand_masks, pose_motion, wrist_ids

    assert wrist_ids({0: "Nose", 1: "L_Wrist", 2: "right-wrist"}) == ([1, 2], "by name")
    assert wrist_ids({i: f"LABEL_{i}" for i in range(17)}) == ([9, 10], "coco17-by-position")
    with pytest.raises(DataError, match="name no wrist and are not the 17 COCO keypoints"):
        wrist_ids({0: "LABEL_0", 1: "LABEL_1"})
    still = np.zeros((4, 2, 3), np.float32)
    still[..., 2] = 1.0
    moving = still.copy()
    moving[:, 0, 0] = [0, 10, 20, 30]  # one keypoint moves 10 px a frame
    assert pose_motion(still, 100) == 0 and pose_motion(moving, 100) == pytest.approx(0.05)
    moving[:, 1, 2] = 0.0  # an unseen keypoint is not counted
    assert pose_motion(moving, 100) == pytest.approx(0.1)
    disc = hand_masks(np.array([[[20, 10, 1.0], [0, 0, 0.0]]], np.float32), [0, 1], 40, 50, 3)
    assert disc[0, 10, 20] and disc[0, 10, 23] and not disc[0, 10, 24] and disc.sum() == 29  # unseen wrist: none
    pose = PoseEstimator(str(tiny_models.pose_model(tmp_path / "pose")), every=2)
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 80, 3), dtype=np.uint8)
    points = pose.keypoints(frames)
    assert points.shape == (5, 17, 3) and (points[1] == points[0]).all()  # every 2nd frame, held
    # the whole frame is the person box, padded to the model's 3:4 (w:h): 80 x 64 -> 80 x 107 with 21 rows above,
    # so keypoints map into x 0..80, y -21..86 (a keypoint may sit in the padding, off the frame)
    assert points[..., 0].min() >= 0 and points[..., 0].max() <= 80
    assert points[..., 1].min() >= -21.5 and points[..., 1].max() <= 86


def test_one_video_per_clip_index(tmp_path):
    from common.video_io import VideoError
    from evaluation.video_files import find_videos

    (tmp_path / "clip_3.mp4").write_bytes(b"x")
    (tmp_path / "clip_00003.npz").write_bytes(b"x")
    with pytest.raises(VideoError, match="clip index 3 again"):
        find_videos(tmp_path, 5)
