"""The paper's zoo as data: ``in_paper`` rows and the ``conwell2021`` selection against the paper's own list.

Reference: ColinConwell/DeepMouseTrap ``model_opts/model_typology.csv`` (commit 31996c2, Aug 2021), its
trained rows: the torchvision ImageNet classifiers and the timm architectures, written out here by hand.
"""
from __future__ import annotations

import pytest

from neuroxr.features.zoo import list_models, load_model

PAPER_TORCHVISION = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "squeezenet1_0", "squeezenet1_1", "densenet121", "densenet161", "densenet169", "densenet201", "googlenet", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "mobilenet_v2", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2", "mnasnet0_5", "mnasnet1_0", "inception_v3"]
PAPER_TIMM = ["cait_s24_224", "coat_lite_mini", "coat_mini", "convit_base", "convit_small", "cspdarknet53", "cspresnet50", "dla34", "dla169", "eca_nfnet_l0", "eca_nfnet_l1", "ecaresnet50d", "ecaresnet101d", "efficientnetv2_rw_s", "fbnetc_100", "gernet_l", "gernet_s", "ghostnet_100", "hardcorenas_a", "hardcorenas_f", "levit_128", "levit_256", "inception_resnet_v2", "inception_v3", "inception_v4", "mixer_b16_224", "mixer_l16_224", "mixnet_l", "mixnet_s", "mnasnet_100", "mobilenetv3_rw", "nasnetalarge", "nf_resnet50", "nfnet_l0", "pit_b_224", "pit_s_224", "pit_ti_224", "pnasnet5large", "regnetx_064", "regnety_064", "repvgg_b3", "repvgg_b3g4", "res2net50_26w_4s", "resnest50d", "resnetrs50", "rexnet_100", "selecsls60", "semnasnet_100", "seresnet152d", "seresnext50_32x4d", "skresnet18", "skresnext50_32x4d", "spnasnet_100", "swin_base_patch4_window7_224", "swin_large_patch4_window7_224", "swin_small_patch4_window7_224", "swin_tiny_patch4_window7_224", "tf_efficientnet_b1", "tf_efficientnet_b3", "tf_efficientnet_b5", "tf_efficientnet_b7", "tnt_s_patch16_224", "tresnet_l", "twins_pcpvt_base", "twins_svt_base", "visformer_small", "deit_base_patch16_224", "deit_small_patch16_224", "deit_tiny_patch16_224", "vit_large_patch16_224", "vit_small_patch16_224", "vit_tiny_patch16_224", "vit_tiny_r_s16_p8_224", "vit_base_patch16_224", "vit_base_patch32_224", "vit_small_patch32_224", "xception", "xception65"]
PAPER_TASKONOMY = ["autoencoding", "class_object", "class_scene", "curvature", "denoising", "depth_euclidean", "depth_zbuffer", "edge_occlusion", "edge_texture", "egomotion", "fixated_pose", "inpainting", "jigsaw", "keypoints2d", "keypoints3d", "nonfixated_pose", "normal", "point_matching", "reshading", "room_layout", "segment_semantic", "segment_unsup25d", "segment_unsup2d", "vanishing_point"]


def _paper_names(df):
    return {(n if isinstance(n, str) and n else m) for m, n in zip(df.model, df.paper_name)}


def test_conwell2021_selection_is_the_papers_zoo():
    sel = list_models(catalog="conwell2021")
    assert sel.model.is_unique
    tv, tm = sel[sel.source == "torchvision"], sel[sel.source == "timm"]
    assert _paper_names(tv) == set(PAPER_TORCHVISION)
    # the paper lists inception_v3 under timm too: timm 0.4's inception_v3 is torchvision's weights
    # (inception_v3_google-1a9a5a14.pth), the same architecture as the torchvision row
    assert _paper_names(tm) == set(PAPER_TIMM) - {"inception_v3"}
    assert set(sel[sel.family == "taskonomy"].model) == set(PAPER_TASKONOMY) | {"taskonomy_random"}
    assert set(sel[sel.family == "baseline"].model) == {"pixels", "gabor", "gist", "rff"}
    assert sel[sel.family != "baseline"].in_paper.all()


def test_rows_beyond_the_paper_stay_available():
    df = list_models()
    extra = df[~df.in_paper]
    assert {"mobilenet_v3_small", "efficientnet_b0", "resmlp_12_224", "alexnet-simclr"} <= set(extra.model)
    assert len(df) == len(list_models(catalog="conwell2021")) + len(extra[extra.family != "baseline"])


def test_paper_rows_carry_type_and_cluster():
    sel = list_models(catalog="conwell2021")
    nets = sel[sel.source.isin(["torchvision", "timm"])]
    assert (nets.paper_type == "imagenet").all() and (nets.task_cluster == "Semantic").all()
    tk = sel[sel.family == "taskonomy"].set_index("model")
    assert tk.loc["denoising", "task_cluster"] == "Other" and tk.loc["curvature", "task_cluster"] == "3D"
    assert tk.loc["taskonomy_random", "task_cluster"] == "Random"


def test_every_network_row_has_top1_and_top5():
    nets = list_models()
    nets = nets[nets.source.isin(["torchvision", "timm"])]
    assert nets.top1.notna().all() and nets.top5.notna().all()
    assert ((nets.top1 > 40) & (nets.top1 < 92) & (nets.top5 > nets.top1)).all()


@pytest.mark.parametrize("name", ["legacy_xception"])
def test_renamed_architectures_keep_the_papers_name(name):
    row = list_models().set_index("model").loc[name]
    assert row.paper_name == "xception" and row.in_paper


def test_the_random_taskonomy_encoder_is_one_seeded_encoder():
    from neuroxr.errors import MissingDataError

    a = load_model("taskonomy_random", device="cpu", seed=3).model.state_dict()
    b = load_model("curvature", weights="random", device="cpu", seed=3).model.state_dict()
    assert all(a[k].equal(b[k]) for k in a)
    with pytest.raises(MissingDataError, match="random"):
        load_model("taskonomy_random", weights="trained")


def test_pipeline_pairs_the_random_encoder_once():
    from neuroxr.pipeline.config import load_settings
    from neuroxr.pipeline.plan import list_model_variants

    s = load_settings({"study": {"dir": "x"}, "ingest": {"source": "simulate"},
                       "extract": {"catalog": "conwell2021", "taskonomy": True, "weights": ["trained", "random"]}})
    pairs = list_model_variants(s)
    tk = [p for p in pairs if p[0] in PAPER_TASKONOMY or p[0] == "taskonomy_random"]
    assert ("taskonomy_random", "random") in tk and ("taskonomy_random", "trained") not in tk
    assert sorted(w for m, w in tk) == ["random"] + ["trained"] * 24
    assert len({m for m, _ in pairs}) == len(list_models(catalog="conwell2021"))


def test_models_cli_lists_the_selection(capsys):
    from neuroxr.cli import main

    assert main(["models", "--catalog", "conwell2021"]) == 0
    cap = capsys.readouterr()
    assert "tf_efficientnet_b7" in cap.out and "efficientnet_b0" not in cap.out
    assert f"{len(list_models(catalog='conwell2021'))} models" in cap.err


def test_extract_trained_over_the_selection_leaves_out_the_random_encoder(monkeypatch, capsys):
    import neuroxr.features.extract as E
    from neuroxr.cli import main

    seen = {}
    monkeypatch.setattr(E, "extract_features", lambda study, models=None, **kw: seen.setdefault("m", models) and [])
    assert main(["extract", "nowhere", "--catalog", "conwell2021", "--family", "taskonomy", "--weights", "trained"]) == 0
    assert seen["m"] == PAPER_TASKONOMY
    assert "taskonomy_random" in capsys.readouterr().err
