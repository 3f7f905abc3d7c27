import numpy as np
import pytest
from PIL import Image

from common.masks import encode_masks
from common.overlay import (
    DIM,
    HIGHLIGHT_OUTLINE,
    OUTLINE_COLOR,
    instance_color,
    outline_layer,
    render_overlay,
)


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    left = np.zeros((20, 30), bool)
    left[:, :12] = True
    return image, [left, ~left]


def test_nothing_drawn_returns_the_image(scene):
    image, masks = scene
    out = render_overlay(image, masks, opacity=0.0, outline=False)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(out), image)


def test_fill_blends_each_instance_colour_at_the_opacity(scene):
    image, masks = scene
    out = np.asarray(render_overlay(image, masks, opacity=0.25, outline=False)).astype(float)
    for k, mask in enumerate(masks):
        expected = 0.75 * image[mask].astype(float) + 0.25 * np.array(instance_color(k), float)
        np.testing.assert_allclose(out[mask], expected, atol=0.5 + 1e-6)


def test_outline_is_the_inner_boundary_in_the_instance_colour(scene):
    image, masks = scene
    out = np.asarray(render_overlay(image, masks, opacity=0.0, outline=True))
    # The shared edge: column 11 belongs to instance 0, column 12 to instance 1.
    assert (out[:, 11] == instance_color(0)).all()
    assert (out[:, 12] == instance_color(1)).all()
    np.testing.assert_array_equal(out[5:15, 3:9], image[5:15, 3:9])  # interiors untouched


def test_rle_input_draws_the_same_as_arrays(scene):
    image, masks = scene
    a = render_overlay(image, masks, opacity=0.5)
    b = render_overlay(Image.fromarray(image), encode_masks(masks), opacity=0.5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_highlight_fills_only_the_chosen_outlines_it_in_white_and_dims_the_rest(scene):
    image, masks = scene
    out = np.asarray(render_overlay(image, masks, opacity=0.5, highlight=1)).astype(float)
    interior_other = (slice(5, 15), slice(3, 9))
    np.testing.assert_allclose(out[interior_other], image[interior_other] * DIM, atol=0.5 + 1e-6)
    interior = (slice(5, 15), slice(16, 26))
    expected = 0.5 * image[interior] + 0.5 * np.array(instance_color(1), float)
    np.testing.assert_allclose(out[interior], expected, atol=0.5 + 1e-6)
    assert (out[:, 12] == HIGHLIGHT_OUTLINE).all() and (out[:, 13] == HIGHLIGHT_OUTLINE).all()


def test_colours_are_distinct_for_many_instances():
    colours = [instance_color(k) for k in range(32)]
    assert len(set(colours)) == 32
    assert all(0 <= c <= 255 for rgb in colours for c in rgb)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"opacity": 1.5}, "opacity"),
        ({"highlight": 2}, r"highlight \[2\]"),
        ({"highlight": [0, -1]}, r"highlight \[-1\]"),
    ],
)
def test_bad_arguments_are_named(scene, kwargs, message):
    image, masks = scene
    with pytest.raises(ValueError, match=message):
        render_overlay(image, masks, **kwargs)


def test_mask_of_another_size_is_named(scene):
    image, masks = scene
    with pytest.raises(ValueError, match=r"mask 1 has shape \(4, 4\)"):
        render_overlay(image, [masks[0], np.ones((4, 4), bool)])


def test_bad_image_is_named(scene):
    _, masks = scene
    with pytest.raises(ValueError, match="uint8 array"):
        render_overlay(np.zeros((20, 30), np.uint8), masks)


def test_outline_layer_lies_outside_a_one_pixel_wide_instance():
    thin = np.zeros((9, 9), bool)
    thin[1:8, 4] = True  # a one-pixel-wide line: an inner outline would hide it entirely
    layer = np.asarray(outline_layer(thin, width=1))
    assert layer.shape == (9, 9, 4)
    drawn = layer[..., 3] == 255
    assert not (drawn & thin).any()  # no instance pixel covered
    # One pixel around the line, by hand: columns 3 and 5 beside it, the ends above and below.
    expected = np.zeros((9, 9), bool)
    expected[1:8, 3] = expected[1:8, 5] = True
    expected[0, 4] = expected[8, 4] = True
    assert np.array_equal(drawn, expected)
    assert (layer[drawn][:, :3] == OUTLINE_COLOR).all() and (layer[~drawn] == 0).all()


def test_outline_layer_inside_and_bad_width():
    square = np.zeros((8, 8), bool)
    square[2:6, 2:6] = True
    inside = np.asarray(outline_layer(square, width=1, outside=False))[..., 3] == 255
    assert inside.sum() == 12 and not (inside & ~square).any()  # the 4x4 square's rim
    with pytest.raises(ValueError, match="width"):
        outline_layer(square, width=0)
