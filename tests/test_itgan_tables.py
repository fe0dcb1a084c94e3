"""ITGAN (Lee 2021) part 1: the table transformer and the evaluation helpers (efficacy, distance, membership attack)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)

from invgen_lit.itgan import RowEncoder, efficacy_summary, membership_attack, ml_efficacy, real_fake_distance, tsne_pairs
from invgen_lit.data import adult_like, table
from invgen_lit.itgan import TableTransformer


def mixed_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    "Ints, floats (64 and 32 bit), object, str, category (ordered, with an unused level) and bool columns."
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 90, n),
        "small": rng.integers(0, 5, n).astype(np.int16),
        "income": rng.normal(50.0, 10.0, n),
        "ratio": rng.normal(3.0, 0.5, n).astype(np.float32),
        "city": pd.Series(rng.choice(["Paris", "Rome", "Oslo"], n), dtype=object),
        "job": pd.Series(rng.choice(["a", "b"], n), dtype="str"),
        "size": pd.Categorical(rng.choice(["S", "M", "L"], n), categories=["S", "M", "L", "XL"], ordered=True),
        "member": rng.random(n) < 0.3,
    })


def assert_roundtrip(back: pd.DataFrame, df: pd.DataFrame) -> None:
    "Exact for non-float columns; floats to rtol 1e-6 plus atol 1e-6 (float32 alpha: error ~1e-7 * 4 sigma_k, absolute)."
    assert list(back.columns) == list(df.columns)
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c].dtype)]
    others = [c for c in df.columns if c not in floats]
    pd.testing.assert_frame_equal(back[others], df[others], check_exact=True)
    pd.testing.assert_frame_equal(back[floats], df[floats], check_exact=False, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def mixed():
    df = mixed_frame()
    return df, TableTransformer().fit(df)


# ----------------------------------------------------------------------------- TableTransformer
def test_exact_roundtrip_mixed(mixed):
    df, tt = mixed
    X = tt.transform(df)
    assert X.dtype == torch.float32 and X.shape == (len(df), tt.output_dim)
    assert_roundtrip(tt.inverse_transform(X), df)
    assert_roundtrip(tt.inverse_transform(X.numpy()), df)  # numpy input too
    assert "output_dim" in repr(tt)


def test_columns_any_order(mixed):
    df, tt = mixed
    assert torch.equal(tt.transform(df[df.columns[::-1]]), tt.transform(df))


def test_category_levels_and_dtypes_kept(mixed):
    df, tt = mixed
    back = tt.inverse_transform(tt.transform(df))
    assert back["size"].dtype == df["size"].dtype  # categories incl. unused 'XL', and order
    assert back["member"].dtype == bool and back["city"].dtype == object and back["small"].dtype == np.int16


def test_bimodal_column():
    rng = np.random.default_rng(1)
    lo, hi = rng.normal(-50, 1, 500), rng.normal(50, 1, 500)
    df = pd.DataFrame({"x": np.concatenate([lo, hi])})
    tt = TableTransformer(seed=0).fit(df)
    (a0, a1, ka, _), (s0, s1, ks, _) = tt.spans
    assert (ka, ks) == ("alpha", "softmax") and s1 - s0 >= 2
    X = tt.transform(df)
    modes = X[:, s0:s1].argmax(1)
    assert set(modes[:500].tolist()).isdisjoint(modes[500:].tolist())
    assert X[:, s0:s1].sum(1).eq(1).all()
    assert_roundtrip(tt.inverse_transform(X), df)


def test_spans_cover_output(mixed):
    _, tt = mixed
    pos = 0
    for start, end, kind, col in tt.spans:
        assert start == pos and end > start and kind in ("alpha", "softmax")
        assert kind == "softmax" or end - start == 1
        pos = end
    assert pos == tt.output_dim
    assert {c for *_, c in tt.spans} == set(tt.columns)


def test_inverse_of_logits(mixed):
    df, tt = mixed
    logits = torch.randn(300, tt.output_dim, generator=torch.Generator().manual_seed(0))
    back = tt.inverse_transform(logits)
    assert list(back.dtypes) == list(df.dtypes) and len(back) == 300
    for col in ["city", "job", "member"]:
        assert set(back[col]) <= set(df[col])
    assert set(back["size"]) <= {"S", "M", "L"}
    assert np.isfinite(back[["income", "ratio"]].to_numpy(np.float64)).all()


def test_state_dict_roundtrip(mixed, tmp_path):
    df, tt = mixed
    path = tmp_path / "tt.pt"
    torch.save(tt.state_dict(), path)
    tt2 = TableTransformer.from_state_dict(torch.load(path, weights_only=True))
    assert tt2.output_dim == tt.output_dim and tt2.spans == tt.spans
    X = tt.transform(df)
    assert torch.equal(tt2.transform(df), X)
    pd.testing.assert_frame_equal(tt2.inverse_transform(X), tt.inverse_transform(X), check_exact=True)


def test_state_dict_with_constants_and_datetime_categorical(tmp_path):
    df = pd.DataFrame({"k": [7] * 5, "c": pd.Categorical(["u"] * 5), "f": [2.5] * 5, "s": ["z"] * 5,
                       "d": pd.to_datetime(["2020-01-01", "2021-06-01", "2020-01-01", "2022-03-04", "2021-06-01"]),
                       "x": np.arange(5.0)})
    tt = TableTransformer().fit(df, categorical=["d"])
    buf = io.BytesIO()
    torch.save(tt.state_dict(), buf)
    buf.seek(0)
    tt2 = TableTransformer.from_state_dict(torch.load(buf, weights_only=True))
    X = tt2.transform(df)
    assert torch.equal(X, tt.transform(df))
    assert_roundtrip(tt2.inverse_transform(X), df)
    assert {c for *_, c in tt.spans} == {"d", "x"}  # constants take no dimensions


def test_constant_columns_take_no_dims():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=50), "k": np.full(50, 3, dtype=np.int32), "f": np.full(50, 0.1),
                       "c": ["same"] * 50, "b": np.ones(50, dtype=bool)})
    tt = TableTransformer().fit(df)
    assert {c for *_, c in tt.spans} == {"x"}
    X = tt.transform(df)
    assert X.shape[1] == tt.output_dim == TableTransformer().fit(df[["x"]]).output_dim
    back = tt.inverse_transform(X)
    assert_roundtrip(back, df)
    assert back["k"].dtype == np.int32 and (back["c"] == "same").all()


def test_integer_overrides_and_clipping():
    df = pd.DataFrame({"u": np.array([0, 1, 2, 250, 255, 3] * 10, dtype=np.uint8), "y": [0, 1] * 30})
    tt = TableTransformer().fit(df, categorical="y")
    assert [k for *_, k in tt.spans if k == "y"] == ["y"] and tt.spans[-1][1] - tt.spans[-1][0] == 2
    X = tt.transform(df)
    assert_roundtrip(tt.inverse_transform(X), df)
    X[:, 0] = 1e6  # a generator running off far out of range must not wrap around uint8
    assert tt.inverse_transform(X)["u"].between(0, 255).all()


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("bad, exc, words", [
    (pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2020-01-02"]), "x": [1.0, 2.0]}), TypeError, ["'t'", "datetime", "categorical="]),
    (pd.DataFrame({"z": np.array([1 + 1j, 2j]), "x": [1.0, 2.0]}), TypeError, ["'z'", "complex"]),
    (pd.DataFrame({"a": [1.0, np.nan, None], "b": ["x", None, "y"]}), ValueError, ["'a' has 2 missing", "'b' has 1 missing"]),
    (pd.DataFrame({"a": [1.0]}), ValueError, ["at least 2 rows", "received 1"]),
    (pd.DataFrame({"a": []}), ValueError, ["at least 2 rows", "received 0"]),
    ("not a frame", TypeError, ["'df'", "DataFrame"]),
])
def test_fit_bad_input(bad, exc, words):
    with pytest.raises(exc) as e:
        TableTransformer().fit(bad)
    for w in words:
        assert w in str(e.value)


def test_unknown_override_names(mixed):
    df, _ = mixed
    with pytest.raises(ValueError, match=r"argument 'categorical': unknown column names \['nope'\]"):
        TableTransformer().fit(df, categorical=["nope"])
    with pytest.raises(ValueError, match="argument 'continuous'"):
        TableTransformer().fit(df, continuous=["zzz"])
    with pytest.raises(TypeError, match="'city'.*integer or float"):
        TableTransformer().fit(df, continuous=["city"])
    with pytest.raises(ValueError, match="named in both"):
        TableTransformer().fit(df, categorical=["age"], continuous=["age"])


def test_transform_bad_input(mixed):
    df, tt = mixed
    bad = df.copy()
    bad.loc[:6, "city"] = ["Tokyo", "Lima", "Tokyo", "A", "B", "C", "D"]
    with pytest.raises(ValueError, match=r"column 'city' has levels not seen at fit: \['Tokyo', 'Lima', 'A', 'B', 'C'\] \(and 1 more\)"):
        tt.transform(bad)
    with pytest.raises(ValueError, match=r"missing \['age'\], extra \[\]"):
        tt.transform(df.drop(columns="age"))
    with pytest.raises(ValueError, match=r"missing \[\], extra \['new'\]"):
        tt.transform(df.assign(new=1))
    with pytest.raises(ValueError, match="'income' has 1 missing values"):
        tt.transform(df.assign(income=[np.nan] + df["income"].tolist()[1:]))


def test_inverse_bad_input(mixed):
    _, tt = mixed
    with pytest.raises(ValueError, match=rf"expected shape \(n, {tt.output_dim}\).*received \(3, {tt.output_dim + 1}\)"):
        tt.inverse_transform(torch.zeros(3, tt.output_dim + 1))
    x = torch.zeros(3, tt.output_dim)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        tt.inverse_transform(x)
    with pytest.raises(TypeError, match="'data'"):
        tt.inverse_transform([[0.0] * tt.output_dim])
    with pytest.raises(RuntimeError, match="not fitted"):
        TableTransformer().transform(mixed[0])
    with pytest.raises(ValueError, match="'n_modes'"):
        TableTransformer(n_modes=0)


# ----------------------------------------------------------------------------- evaluate
def separable_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "blue"], n)
    y = np.where(x1 + x2 + 0.5 * (color == "red") > 0.25, "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "color": color, "y": y})


def test_ml_efficacy_separable():
    train, test = separable_frame(2000, 0), separable_frame(1000, 1)
    res = ml_efficacy(train, test, "y")
    assert list(res.index) == ["logistic_regression", "decision_tree", "adaboost", "mlp"]
    assert (res["f1"] > 0.8).all() and (res["auroc"] > 0.9).all()


def test_ml_efficacy_shuffled_labels_is_chance():
    # Linear models fitted on noise point in a random direction, whose AUROC on real test labels is
    # anywhere in (0, 1) when the features are few; adult_like (~20 encoded dims) keeps that spread small,
    # and the depth-20 tree, which memorises the noise, stays right at 0.5.
    train, test = adult_like(3000, 0), adult_like(2000, 1)
    real = efficacy_summary(ml_efficacy(train, test, "income"))
    shuffled = train.assign(income=np.random.default_rng(0).permutation(train["income"].to_numpy()))
    res = ml_efficacy(shuffled, test, "income")
    assert abs(efficacy_summary(res)["auroc"] - 0.5) < 0.15 and real["auroc"] > 0.8
    assert abs(res.loc["decision_tree", "auroc"] - 0.5) < 0.05


def test_ml_efficacy_single_class_and_errors():
    train, test = separable_frame(300, 0), separable_frame(300, 1)
    res = ml_efficacy(train.assign(y="yes"), test, "y", classifiers=["mlp", "adaboost"])
    assert res["f1"].eq(0.0).all() and res["auroc"].eq(0.5).all() and res["note"].str.contains("single class").all()
    with pytest.raises(ValueError, match="expected names among.*received \\['svm'\\]"):
        ml_efficacy(train, test, "y", classifiers=["svm"])
    with pytest.raises(ValueError, match="argument 'target'"):
        ml_efficacy(train, test, "label")


def test_ml_efficacy_real_tables():
    train, test = table("breast_cancer")
    assert efficacy_summary(ml_efficacy(train, test, "target"))["auroc"] > 0.9
    res = ml_efficacy(adult_like(3000, 0), adult_like(1000, 1), "income", classifiers=["logistic_regression"])
    assert res.loc["logistic_regression", "auroc"] > 0.75


def test_membership_attack():
    members, non_members = adult_like(600, 0), adult_like(800, 1)
    leak = membership_attack(members, members, non_members)
    assert leak["auroc"] > 0.99 and leak["member_distance"] == 0.0 and leak["n"] == 600
    fresh = membership_attack(adult_like(600, 2), members, non_members)
    assert abs(fresh["auroc"] - 0.5) < 0.07


def test_real_fake_distance_and_encoder():
    df = adult_like(300, 0)
    assert real_fake_distance(df, df) == 0.0
    assert real_fake_distance(adult_like(300, 1), df) > 0.0
    enc = RowEncoder().fit(df, exclude=["income"])
    Z = enc.transform(df)
    assert Z.dtype == torch.float64 and Z.shape == (300, enc.dim)
    unseen = df.assign(sex="Other")
    assert enc.transform(unseen).shape == Z.shape  # unseen level -> all-zero block


def test_tsne_pairs_shapes():
    a, b = tsne_pairs(adult_like(200, 0), adult_like(150, 1), n=60)
    assert a.shape == (60, 2) and b.shape == (60, 2) and np.isfinite(a).all()
