import itertools

import numpy as np
import pytest

from kennen.seeds import Purpose, StableRng, derive, generator, sequence, torch_generator


def test_stable_rng_is_stable_across_machines():
    # Golden draws: integer arithmetic on PCG64's raw stream, which NumPy keeps stable.
    rng = StableRng(1, Purpose.SAMPLE)
    assert [rng.below(1000) for _ in range(5)] == [375, 786, 560, 549, 311]


def test_purposes_never_collide_across_base_seeds():
    # Additive offsets did: 2018 + 7 == 2019 + 6. Every (base, purpose, ids) must be its own stream.
    keys = [(b, p, *ids) for b in range(2014, 2024) for p in Purpose for ids in [(), (0,), (1,), (0, 0), (1, 0)]]
    seeds = [derive(*k) for k in keys]
    assert len(set(seeds)) == len(keys)
    states = {tuple(sequence(*k).generate_state(4)) for k in keys}
    assert len(states) == len(keys)


@pytest.mark.parametrize(
    "a, b", [((5, Purpose.SAMPLE), (5, Purpose.SAMPLE, 0)), ((5, Purpose.TRAIN, 0), (5, Purpose.TRAIN, 0, 0))]
)
def test_trailing_zero_ids_are_a_different_stream(a, b):
    # SeedSequence pads entropy with zeros: the id count in the entropy keeps these apart.
    assert derive(*a) != derive(*b)


def test_purpose_values_are_distinct_and_stable():
    values = [p.value for p in Purpose]
    assert len(set(values)) == len(values)
    assert Purpose.SAMPLE == 1 and Purpose.TRAIN == 2  # stored zoos depend on these


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_words_outside_32_bits_are_refused(bad):
    # 2**32 would be split into the words (0, 1) and collide with a longer key.
    with pytest.raises(ValueError, match="2\\*\\*32"):
        derive(bad, Purpose.SAMPLE)
    with pytest.raises(ValueError):
        derive(1, Purpose.SAMPLE, bad)


def test_generators_follow_their_seed():
    assert generator(3, Purpose.SPLITS).integers(1 << 30) == generator(3, Purpose.SPLITS).integers(1 << 30)
    a = torch_generator(3, Purpose.BATCHES).initial_seed()
    assert a == derive(3, Purpose.BATCHES) != torch_generator(3, Purpose.DROPOUT).initial_seed()


def test_permutation_prefix_is_a_uniform_permutation():
    for n in (1, 2, 7, 50):
        assert sorted(StableRng(0, Purpose.QUERIES, n).permutation_prefix(n)) == list(range(n))
    # each of the 6 orders of 3 items about equally often
    counts = {}
    for s in range(3000):
        order = tuple(StableRng(s, Purpose.QUERIES).permutation_prefix(3))
        counts[order] = counts.get(order, 0) + 1
    assert len(counts) == 6 and all(400 < c < 600 for c in counts.values())
    assert list(itertools.islice(StableRng(0, Purpose.QUERIES).permutation_prefix(10**12), 3))  # lazy
    assert np.all(np.array([StableRng(9, Purpose.QUERIES).below(7) for _ in range(100)]) < 7)


def test_no_seed_is_derived_outside_kennen_seeds():
    # Every stream goes through kennen/seeds.py: no SeedSequence, default_rng or PCG64 of its own, and no
    # arithmetic on seeds (offsets and strides collide across base seeds).
    import re
    from pathlib import Path

    pattern = re.compile(
        r"SeedSequence\(|default_rng\(|PCG64\(|seed\w*\s*[+*]\s*\w|\+\s*\w*seed\b|_OFFSET\b|manual_seed\([^)]*[+*]"
    )
    repo = Path(__file__).resolve().parents[1]
    found = [
        f"{path.relative_to(repo)}:{i}: {line.strip()}"
        for folder in ("kennen", "stages")
        for path in sorted((repo / folder).rglob("*.py"))
        if path.name != "seeds.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)
