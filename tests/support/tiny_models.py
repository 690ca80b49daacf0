"""TEST-ONLY: random-weight models of the right structure for the real-video pipeline (issue 16), written to
disk in the formats users supply: a face parser in HF format (SegFormer, CelebAMask-HQ label names), a
narrow syncnet_python state dict (same layer names and kernel sizes, fewer channels), an ArcFace-shaped ONNX
model (112 x 112 in, 512 out), and Inception / I3D TorchScript files with the StyleGAN call conventions.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

CELEBAMASK_LABELS = ["background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                     "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]


def face_parser(directory: Path) -> Path:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    torch.manual_seed(0)
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2],
                             decoder_hidden_size=16, num_labels=len(CELEBAMASK_LABELS),
                             id2label=dict(enumerate(CELEBAMASK_LABELS)),
                             label2id={n: i for i, n in enumerate(CELEBAMASK_LABELS)})
    model = SegformerForSemanticSegmentation(config)
    with torch.no_grad():  # make "skin" the likeliest label near the middle, so a face box exists
        model.decode_head.classifier.bias[1] += 2.0
    model.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return directory


COCO_KEYPOINTS = ["Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
                  "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle"]


def pose_model(directory: Path) -> Path:
    """A random ViTPose (simple decoder) with the 17 COCO keypoints named as the HF ViTPose configs do."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation
    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=1, intermediate_size=32, out_indices=[1])
    config = VitPoseConfig(backbone_config=backbone, num_labels=17, id2label=dict(enumerate(COCO_KEYPOINTS)),
                           label2id={n: i for i, n in enumerate(COCO_KEYPOINTS)})
    model = VitPoseForPoseEstimation(config)
    with torch.no_grad():  # wrists confidently "seen" (peak >= 0.3), so the hands region is not empty
        model.head.conv.bias[9:11] += 1.0
    model.save_pretrained(directory)
    return directory


def syncnet_shapes(aud=(64, 192, 384, 256, 256, 512), lip=(96, 256, 256, 256, 256, 512), hidden=512, out=1024):
    """Zero tensors with syncnet_python's parameter names and kernel sizes (default: its real widths)."""
    from common.syncnet import AUDIO_CNN, LIP_CNN
    aud_kernels = [(3, 3)] * 5 + [(5, 4)]
    lip_kernels = [(5, 7, 7), (1, 5, 5), (1, 3, 3), (1, 3, 3), (1, 3, 3), (1, 6, 6)]
    state = {}
    for prefix, layout, widths, kernels, cin in (("netcnnaud", AUDIO_CNN, aud, aud_kernels, 1),
                                                  ("netcnnlip", LIP_CNN, lip, lip_kernels, 3)):
        convs = [spec[0] for spec in layout if spec[1] == "conv"]
        for k, index in enumerate(convs):
            state[f"{prefix}.{index}.weight"] = torch.zeros(widths[k], cin, *kernels[k])
            state[f"{prefix}.{index + 1}.weight"] = torch.zeros(widths[k])
            cin = widths[k]
    for prefix, width in (("netfcaud", aud[-1]), ("netfclip", lip[-1])):
        state[f"{prefix}.0.weight"], state[f"{prefix}.3.weight"] = torch.zeros(hidden, width), torch.zeros(out, hidden)
    return state


def syncnet(path: Path, narrow: bool = True) -> Path:
    from common.syncnet import SyncNet
    torch.manual_seed(0)
    shapes = syncnet_shapes((4, 8, 8, 8, 8, 16), (4, 8, 8, 8, 8, 16), 16, 8) if narrow else syncnet_shapes()
    torch.save(SyncNet(shapes).state_dict(), path)
    return path


def arcface(path: Path) -> Path:
    """An ONNX model with ArcFace's interface: (N, 3, 112, 112) -> (N, 512)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = np.random.default_rng(0).standard_normal((512, 3 * 14 * 14)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w"], ["683"], transB=1)],
        "tiny_arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])], [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


class _Inception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(48, 32)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 4).flatten(1))


class _I3D(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(96, 16)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        return self.fc(torch.nn.functional.adaptive_avg_pool3d(x, (2, 4, 4)).flatten(1))


def inception(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.script(_Inception()).save(str(path))
    return path


def i3d(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.script(_I3D()).save(str(path))
    return path


def all_metric_models(directory: Path) -> dict[str, str]:
    """eval.real overrides pointing at fresh tiny models in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return {"syncnet": str(syncnet(directory / "syncnet.model")), "arcface": str(arcface(directory / "arcface.onnx")),
            "inception": str(inception(directory / "inception.pt")), "i3d": str(i3d(directory / "i3d.pt"))}
