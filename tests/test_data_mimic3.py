import numpy as np
import pytest

from kmtl.data.clinical.icu import generate_icu_stays, simulate_icu_events
from kmtl.data.clinical.mimic3 import LABEL_NAMES, PHENOTYPES, load_mimic3, los_bucket
from kmtl.data.clinical.discretizer import VARIABLES, Discretizer

HEADER = ["Hours", *VARIABLES]
MULTITASK_HEADER = (
    "filename,length of stay,in-hospital mortality task (pos;mask;label),length of stay task (masks;labels),"
    "phenotyping task (labels),decompensation task (masks;labels)"
)
N = np.nan
# Three episodes of two patients: (file, events, length of stay, in-hospital death time or None, phenotypes).
EPISODES = {
    "10011_episode1_timeseries.csv": (
        [(0.25, {"Heart Rate": 80, "Glascow coma scale eye opening": "4 Spontaneously"}),
         (2.5, {"Heart Rate": 90, "Temperature": 37.1}), (6.0, {"Heart Rate": 110})],
        7.5, 7.5, (0, 24),
    ),
    "10011_episode2_timeseries.csv": ([(0.5, {"Heart Rate": 70}), (49.0, {"Heart Rate": 75})], 50.25, None, ()),
    "10234_episode1_timeseries.csv": ([(5.5, {"pH": 7.3}), (29.0, {"pH": 7.1})], 30.0, 40.0, (3,)),
}  # fmt: skip


def _write_timeseries(folder, name, events):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",".join(HEADER)]
    for hours, cells in events:
        lines.append(",".join([repr(float(hours))] + [str(cells.get(v, "")) for v in VARIABLES]))
    (folder / name).write_text("\n".join(lines) + "\n")


def _multitask_line(name, los, death, phenotypes, first_event):
    """One line of the benchmark's multitask listfile, written as its `create_multitask` script does."""
    lived = 1e18 if death is None else death
    mortality = int(death is not None)
    ihm_mask = int(los >= 48 - 1e-6 and first_event <= 48 + 1e-6)
    ihm = f"{47 if ihm_mask else 0};{ihm_mask};{mortality}"
    stay_hours = range(int(los + 1e-6) + 1)
    decomp_hours = range(int(min(los, lived) + 1e-6) + 1)

    def mask(t):
        return str(int(t > 4 and t > first_event))

    stay = ";".join([mask(t) for t in stay_hours] + [f"{los - t:.6f}" for t in stay_hours])
    decomp = ";".join([mask(t) for t in decomp_hours] + [str(mortality * int(lived - t < 24)) for t in decomp_hours])
    pheno = ";".join("1" if i in phenotypes else "0" for i in range(25))
    return f"{name},{los:.6f},{ihm},{stay},{pheno},{decomp}"


def _write_multitask(root, episodes, split_folder="train", listfile=None):
    folder = root / "multitask" / split_folder
    lines = [MULTITASK_HEADER]
    for name, (events, los, death, phenotypes) in episodes.items():
        _write_timeseries(folder, name, events)
        lines.append(_multitask_line(name, los, death, phenotypes, events[0][0]))
    target = folder / "listfile.csv" if listfile is None else root / "multitask" / listfile
    target.write_text("\n".join(lines) + "\n")
    return target


# === The multitask listfile ===


def test_multitask_labels_land_on_the_right_steps(tmp_path):
    _write_multitask(tmp_path, EPISODES)
    data = load_mimic3(tmp_path, "train")
    assert data.episode_ids == list(EPISODES) and data.groups.tolist() == [10011, 10011, 10234]
    assert set(data.labels) == set(LABEL_NAMES)
    assert [len(x) for x in data.features] == [8, 51, 30]
    np.testing.assert_array_equal(data.labels["mortality"], [-1, 0, -1])  # stays under 48 h have no label
    # Stay 1 (7.5 h, died at 7.5 h): predictions at hours 5, 6, 7 sit on steps 4, 5, 6.
    np.testing.assert_array_equal(data.labels["decompensation"][0], [-1, -1, -1, -1, 1, 1, 1, -1])
    np.testing.assert_array_equal(data.labels["remaining_stay"][0], [N, N, N, N, 2.5, 1.5, 0.5, N])
    np.testing.assert_array_equal(data.labels["length_of_stay"][0], [-1, -1, -1, -1, 0, 0, 0, -1])
    # Stay 2 (50.25 h, alive): labels on steps 4..49; more than 24 h left up to step 25.
    decomp, bucket, remaining = (data.labels[n][1] for n in ("decompensation", "length_of_stay", "remaining_stay"))
    np.testing.assert_array_equal(decomp, [-1] * 4 + [0] * 46 + [-1])
    np.testing.assert_array_equal(bucket, [-1] * 4 + [1] * 22 + [0] * 24 + [-1])
    assert remaining[4] == pytest.approx(45.25) and remaining[49] == pytest.approx(0.25)
    # Stay 3 (30 h, first chart at 5.5 h, died in hospital at 40 h): labels from hour 6, death within 24 h after 16.
    np.testing.assert_array_equal(data.labels["decompensation"][2], [-1] * 5 + [0] * 11 + [1] * 14)
    np.testing.assert_allclose(data.labels["remaining_stay"][2][5:], 30.0 - np.arange(6, 31), rtol=1e-6)
    expected = np.zeros((3, 25), dtype="int32")
    expected[0, [0, 24]] = expected[2, 3] = 1
    np.testing.assert_array_equal(data.labels["phenotype"], expected)
    for x, (events, los, _, _) in zip(data.features, EPISODES.values()):
        dicts = [{"Hours": hours, **cells} for hours, cells in events]
        np.testing.assert_array_equal(x, Discretizer().transform(dicts, end_hours=los))
    heart = Discretizer().channel_groups["Heart Rate"]
    np.testing.assert_array_equal(data.features[0][:, heart[0]], [80, 80, 90, 90, 90, 110, 110, 110])


def test_split_listfiles_and_fallbacks(tmp_path):
    names = list(EPISODES)
    _write_multitask(tmp_path, {n: EPISODES[n] for n in names[:2]}, listfile="train_listfile.csv")
    _write_multitask(tmp_path, {names[1]: EPISODES[names[1]]}, listfile="val_listfile.csv")
    _write_multitask(tmp_path, {names[2]: EPISODES[names[2]]}, split_folder="test")
    assert load_mimic3(tmp_path, "train").episode_ids == names[:2]
    assert load_mimic3(tmp_path, "val").episode_ids == names[1:2]
    assert load_mimic3(tmp_path / "multitask", "test").episode_ids == names[2:]  # the task folder itself
    assert load_mimic3(tmp_path, "train", limit=1).episode_ids == names[:1]
    hourly = load_mimic3(tmp_path, "train", discretizer=Discretizer(timestep=2.0))
    assert [len(x) for x in hourly.features] == [4, 26]
    np.testing.assert_array_equal(hourly.labels["decompensation"][0], [-1, -1, 1, 1])  # hours 5, 6 -> step 2; 7 -> 3
    (tmp_path / "multitask" / "val_listfile.csv").unlink()
    with pytest.raises(FileNotFoundError, match="No listfile for split 'val'"):
        load_mimic3(tmp_path, "val")


# === Single-task listfiles ===


def _write_task(root, task, header, lines, episodes):
    folder = root / task / "train"
    for name, limit in episodes:
        events = [(h, cells) for h, cells in EPISODES[name][0] if h < limit]
        _write_timeseries(folder, name, events)
    (folder / "listfile.csv").write_text("\n".join([header, *lines]) + "\n")


def test_single_task_listfiles(tmp_path):
    names = list(EPISODES)
    _write_task(tmp_path, "in-hospital-mortality", "stay,y_true", [f"{names[1]},0"], [(names[1], 48.0)])
    decomp_lines = [f"{names[2]},{t:.6f},{int(40 - t < 24)}" for t in (30, 6, 17, 16)]  # train lines are shuffled
    _write_task(tmp_path, "decompensation", "stay,period_length,y_true", decomp_lines, [(names[2], 99)])
    los_lines = [f"{names[0]},{t:.6f},{7.5 - t:.6f}" for t in (5, 6, 7)]
    _write_task(tmp_path, "length-of-stay", "stay,period_length,y_true", los_lines, [(names[0], 99)])
    pheno_header = "stay,period_length," + ",".join(PHENOTYPES)
    pheno_line = f"{names[2]},30.000000," + ",".join("1" if i == 3 else "0" for i in range(25))
    _write_task(tmp_path, "phenotyping", pheno_header, [pheno_line], [(names[2], 99)])

    ihm = load_mimic3(tmp_path, source="in-hospital-mortality")
    assert len(ihm.features[0]) == 48 and ihm.labels["mortality"].tolist() == [0]
    assert (ihm.labels["decompensation"][0] == -1).all() and (ihm.labels["phenotype"] == -1).all()
    decomp = load_mimic3(tmp_path, source="decompensation")
    assert len(decomp.features[0]) == 30  # ends at the last prediction time
    np.testing.assert_array_equal(
        decomp.labels["decompensation"][0], [-1] * 5 + [0] + [-1] * 9 + [0, 1] + [-1] * 12 + [1]
    )
    assert decomp.labels["mortality"].tolist() == [-1] and np.isnan(decomp.labels["remaining_stay"][0]).all()
    stay = load_mimic3(tmp_path, source="length-of-stay")
    np.testing.assert_array_equal(stay.labels["remaining_stay"][0], [N, N, N, N, 2.5, 1.5, 0.5])
    np.testing.assert_array_equal(stay.labels["length_of_stay"][0], [-1, -1, -1, -1, 0, 0, 0])
    pheno = load_mimic3(tmp_path, source="phenotyping")
    assert len(pheno.features[0]) == 30 and pheno.labels["phenotype"][0].tolist() == [0, 0, 0, 1] + [0] * 21


# === Errors ===


def _corrupt(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("filename,length of stay", "file,length", "listfile.csv: expected a header starting with 'filename"),
        (",7.500000,", ",seven,", "line 2: field 'length of stay' must hold float"),
        ("7.500000;6.500000", "7.500000", "line 2: field 'length of stay task \\(masks;labels\\)' must hold as many"),
        (",0;0;1,", ",0;0,", "line 2: expected 3 in-hospital mortality values"),
        (",0;0;1,", ",0;0;1,extra,", "line 2: expected 6 comma-separated fields"),
    ],
)
def test_malformed_listfile_errors_name_file_line_and_field(tmp_path, old, new, match):
    listfile = _write_multitask(tmp_path, EPISODES)
    _corrupt(listfile, old, new)
    with pytest.raises(ValueError, match=match):
        load_mimic3(tmp_path)


def test_bad_files_and_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="No 'multitask' task folder"):
        load_mimic3(tmp_path)
    _write_multitask(tmp_path, EPISODES)
    series = tmp_path / "multitask" / "train" / "10011_episode1_timeseries.csv"
    _corrupt(series, "4 Spontaneously", "Eyes wide open")
    with pytest.raises(ValueError, match="10011_episode1_timeseries.csv: Variable 'Glascow coma scale eye opening'"):
        load_mimic3(tmp_path)
    series.unlink()
    with pytest.raises(FileNotFoundError, match="10011_episode1_timeseries.csv"):
        load_mimic3(tmp_path)
    for kwargs, match in (({"split": "dev"}, "split='dev'"), ({"source": "ihm"}, "source='ihm'")):
        with pytest.raises(ValueError, match=match):
            load_mimic3(tmp_path, **kwargs)


# === Round trip with the synthetic generator ===


def test_generated_stays_written_in_the_benchmark_format_load_back_identically(tmp_path):
    stays = simulate_icu_events(15, seed=8)
    folder = tmp_path / "multitask" / "test"
    folder.mkdir(parents=True)
    lines = [MULTITASK_HEADER]
    for stay in stays:
        columns = stay["timeseries"]
        rows = [",".join(HEADER)]
        for i, hours in enumerate(columns["Hours"]):
            cells = [columns[v][i] if v in columns else None for v in VARIABLES]
            rows.append(",".join([repr(float(hours))] + ["" if _empty(c) else str(c) for c in cells]))
        (folder / stay["name"]).write_text("\n".join(rows) + "\n")
        phenotypes = tuple(np.flatnonzero(stay["phenotype"]))
        lines.append(_multitask_line(stay["name"], stay["los"], stay["death_hours"], phenotypes, stay["first_event"]))
    (folder / "listfile.csv").write_text("\n".join(lines) + "\n")
    loaded, generated = load_mimic3(tmp_path, "test"), generate_icu_stays(15, seed=8)
    assert loaded.episode_ids == generated.episode_ids
    np.testing.assert_array_equal(loaded.groups, generated.groups)
    for a, b in zip(loaded.features, generated.features):
        np.testing.assert_array_equal(a, b)
    for name in LABEL_NAMES:
        for a, b in zip(loaded.labels[name], generated.labels[name]):
            np.testing.assert_allclose(a, b, atol=1e-5)  # remaining hours pass through "%.6f" in the listfile


def _empty(cell):
    return cell is None or (isinstance(cell, float) and np.isnan(cell))


def test_los_buckets_follow_the_benchmark_edges():
    hours = [0.0, 23.99, 24.0, 47.9, 48.0, 191.0, 192.0, 335.9, 336.0, 5000.0]
    np.testing.assert_array_equal(los_bucket(hours), [0, 0, 1, 1, 2, 7, 8, 8, 9, 9])
