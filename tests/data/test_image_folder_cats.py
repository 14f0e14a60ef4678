"""ImageFolderCats on tiny PNG and JPEG files written into a temporary folder."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from PIL import Image

from gdtorch.data import ImageFolderCats


def colours(images: torch.Tensor) -> list[tuple[int, int, int]]:
    """The mean colour of each image, in 0-255 levels."""
    return [tuple(round(v) for v in (img.mean(dim=(1, 2)) * 255).tolist()) for img in images]


def test_loads_sizes_labels_and_pixels(photo_folder) -> None:
    root = photo_folder.root
    cat_colours, dog_colours = photo_folder.cat_colours, photo_folder.dog_colours
    data = ImageFolderCats(root, image_size=12)
    assert data.class_folders == ["cat", "dog"]
    assert data.images.shape == (7, 3, 12, 12) and data.images.dtype == torch.float32
    assert data.targets.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    names = [p.relative_to(root).as_posix() for p in data.paths]
    assert names == [
        "cat/a.png",
        "cat/b.PNG",
        "cat/nested/c.png",
        *[f"dog/d{i}.jpg" for i in range(3)],
        "dog/grey.png",
    ]
    # PNG keeps solid colours exactly; the greyscale PNG becomes three equal channels.
    assert colours(data.images[:3]) == cat_colours
    assert colours(data.images[6:]) == [dog_colours[3]]
    assert torch.equal(
        data.images[:3], data.images[:3].amax(dim=(2, 3), keepdim=True).expand(-1, -1, 12, 12)
    )
    # JPEG is lossy: within a few levels.
    for got, want in zip(colours(data.images[3:6]), dog_colours[:3], strict=True):
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 4


def test_positive_class_is_configurable(photo_folder) -> None:
    data = ImageFolderCats(photo_folder.root, positive_class="dog", image_size=8)
    assert data.targets.tolist() == [0.0] * 3 + [1.0] * 4


def test_threads_decode_the_same_tensors(photo_folder) -> None:
    one = ImageFolderCats(photo_folder.root, image_size=8)
    threaded = ImageFolderCats(photo_folder.root, image_size=8, num_workers=2)
    assert torch.equal(one.images, threaded.images) and torch.equal(one.targets, threaded.targets)


def test_non_square_images_are_centre_cropped(tmp_path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "other").mkdir()
    # 30x10: red | blue | red in thirds; the centre square is the blue third.
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    image.paste((0, 0, 255), (10, 0, 20, 10))
    image.save(tmp_path / "cat" / "wide.png")
    Image.new("RGB", (10, 10)).save(tmp_path / "other" / "black.png")
    data = ImageFolderCats(tmp_path, image_size=10)
    assert torch.equal(data.images[0, 2], torch.ones(10, 10))
    assert torch.equal(data.images[0, 0], torch.zeros(10, 10))


def test_missing_folder(tmp_path) -> None:
    root = tmp_path / "absent"
    with pytest.raises(
        FileNotFoundError, match=rf"photo folder {re.escape(str(root))} does not exist.*data\.root"
    ):
        ImageFolderCats(root)


def test_missing_positive_class(photo_folder) -> None:
    shutil.rmtree(photo_folder.root / "cat")
    (photo_folder.root / "bird").mkdir()
    Image.new("RGB", (8, 8)).save(photo_folder.root / "bird" / "b.png")
    with pytest.raises(FileNotFoundError) as error:
        ImageFolderCats(photo_folder.root)
    message = str(error.value)
    assert str(photo_folder.root / "cat") in message
    assert "['bird', 'dog']" in message and "positive_class" in message


def test_only_the_positive_class(photo_folder) -> None:
    shutil.rmtree(photo_folder.root / "dog")
    with pytest.raises(ValueError, match="holds only the positive class 'cat'"):
        ImageFolderCats(photo_folder.root)


def test_empty_class(photo_folder) -> None:
    (photo_folder.root / "fox").mkdir()
    (photo_folder.root / "fox" / "readme.txt").write_text("no images here")
    fox = photo_folder.root / "fox"
    with pytest.raises(ValueError, match=rf"class folder {re.escape(str(fox))} holds no images"):
        ImageFolderCats(photo_folder.root)


@pytest.mark.parametrize(
    "content",
    [b"this is not a jpeg at all", None],  # garbage bytes; a JPEG cut short
    ids=["garbage", "truncated"],
)
def test_unreadable_image(photo_folder, content) -> None:
    path = photo_folder.root / "dog" / "broken.jpg"
    if content is None:
        content = (photo_folder.root / "dog" / "d0.jpg").read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(
        ValueError, match=rf"cannot read image {re.escape(str(path))} .*replace the file"
    ):
        ImageFolderCats(photo_folder.root)
