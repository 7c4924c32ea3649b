"""The demo's data: a small, seeded set of shapes on textured backgrounds.

Writes the same images in COCO instance format (boxes and polygon masks) and
ADE20K's semantic format, each with a train and a held-out split, so that
the real mmdet/mmseg datasets, metrics and our configs run on it::

    python -m mmpoolformer.datasets.shapes data/shapes --train 64 --val 16

Layout under ROOT::

    coco/{train2017,val2017}/*.jpg
    coco/annotations/instances_{train2017,val2017}.json
    ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    ade/ADEChallengeData2016/annotations/{training,validation}/*.png

The classes are its own: detection has :data:`SHAPES`, segmentation
:data:`SEG_CLASSES` (background first). Label maps follow ADE20K's file
convention (0 = ignored, k = class k-1 after ``reduce_zero_label``), so
background is 1 and the shapes 2-4. The demo configs name these classes and
:data:`PALETTE` / :data:`SEG_PALETTE` (a test keeps them in step).
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

#: Detection classes (COCO category ids 1-3).
SHAPES = ('circle', 'square', 'triangle')
#: Segmentation classes: label k + 1 in the files is class k.
SEG_CLASSES = ('background', ) + SHAPES
#: Colours (RGB) the visualizers draw the classes in.
PALETTE = [(220, 20, 60), (0, 130, 230), (20, 200, 60)]
SEG_PALETTE = [(128, 128, 128)] + PALETTE


def _polygon(shape, cx, cy, r):
    if shape == 'circle':
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    elif shape == 'square':
        angles = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
    else:
        angles = np.array([-0.5, 1 / 6, 5 / 6]) * np.pi
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)


def _image(rng, size):
    """A textured background and 2-4 non-overlapping shapes on a grid."""
    h = w = size
    base = rng.uniform(60, 200, 3)
    noise = rng.normal(0, 1, (h // 8 + 1, w // 8 + 1, 3))
    texture = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base + 25 * texture + rng.normal(0, 6, (h, w, 3)), 0, 255)
    semantic = np.ones((h, w), np.uint8)
    cells = rng.permutation(4)[:rng.integers(2, 5)]
    objects = []
    cell = size // 2
    for c in cells:
        shape = int(rng.integers(len(SHAPES)))
        r = rng.uniform(0.28, 0.42) * cell
        cx = (c % 2) * cell + cell / 2 + rng.uniform(-0.08, 0.08) * cell
        cy = (c // 2) * cell + cell / 2 + rng.uniform(-0.08, 0.08) * cell
        poly = _polygon(SHAPES[shape], cx, cy, r)
        color = (base + rng.choice([-1, 1], 3) * rng.uniform(50, 90, 3)) % 256
        pts = np.round(poly).astype(np.int32)
        cv2.fillPoly(img, [pts], color.tolist())
        cv2.fillPoly(semantic, [pts], shape + 2)
        objects.append((shape, pts))
    return img.astype(np.uint8), semantic, objects


def _coco_split(root, split, items, start_id):
    images, annotations = [], []
    ann_id = start_id
    for img_id, (name, img, _, objects) in enumerate(items, start_id):
        cv2.imwrite(osp.join(root, 'coco', split, name), img)
        h, w = img.shape[:2]
        images.append(dict(id=img_id, file_name=name, height=h, width=w))
        for shape, pts in objects:
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [pts], 1)
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
            annotations.append(
                dict(id=ann_id, image_id=img_id, category_id=shape + 1,
                     bbox=[x0, y0, bw, bh], area=int(mask.sum()),
                     segmentation=[pts.flatten().astype(float).tolist()],
                     iscrowd=0))
            ann_id += 1
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(SHAPES)]
    path = osp.join(root, 'coco', 'annotations', f'instances_{split}.json')
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)


def make_dataset(root, num_train=32, num_val=8, size=128, seed=0):
    """Write the dataset under ``root``; the same seed gives the same files.

    Returns:
        dict: paths of the COCO and ADE20K roots.
    """
    if num_train < 1 or num_val < 1 or size < 32:
        raise ValueError(f'need num_train, num_val >= 1 and size >= 32, got '
                         f'{num_train}, {num_val}, {size}')
    rng = np.random.default_rng(seed)
    ade = osp.join(root, 'ade', 'ADEChallengeData2016')
    for d in ('coco/train2017', 'coco/val2017', 'coco/annotations'):
        os.makedirs(osp.join(root, d), exist_ok=True)
    splits = (('train2017', 'training', num_train),
              ('val2017', 'validation', num_val))
    for coco_split, ade_split, n in splits:
        os.makedirs(osp.join(ade, 'images', ade_split), exist_ok=True)
        os.makedirs(osp.join(ade, 'annotations', ade_split), exist_ok=True)
        items = []
        for i in range(n):
            img, semantic, objects = _image(rng, size)
            stem = f'{ade_split}_{i:05d}'
            cv2.imwrite(osp.join(ade, 'images', ade_split, stem + '.jpg'),
                        img)
            cv2.imwrite(
                osp.join(ade, 'annotations', ade_split, stem + '.png'),
                semantic)
            items.append((stem + '.jpg', img, semantic, objects))
        _coco_split(root, coco_split, items, 1)
    return dict(coco=osp.join(root, 'coco') + '/', ade=ade)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root')
    parser.add_argument('--train', type=int, default=32)
    parser.add_argument('--val', type=int, default=8)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    print(make_dataset(args.root, args.train, args.val, args.size, args.seed))


if __name__ == '__main__':
    main()
