"""The sizes of both MetaFormer generations, one table each. As in
mmpretrain's ConvNeXt, a row carries only what varies between sizes; what a
family adds (its token mixers, its norm, its scales) is said once, by the
family (:func:`family_table`)."""
from typing import Dict

S_DIMS = (64, 128, 320, 512)
M_DIMS = (96, 192, 384, 768)

#: PoolFormer's sizes (Yu et al., CVPR 2022, Table 1), which PoolFormerV2,
#: IdentityFormer and RandFormer keep (MetaFormer Baselines, TPAMI 2024).
#: The last column is PoolFormer's own: its LayerScale init (the baselines
#: have no LayerScale).
POOLFORMER_SIZES = {
    #      depths          dims    PoolFormer's layer_scale_init_value
    's12': ((2, 2, 6, 2), S_DIMS, 1e-5),
    's24': ((4, 4, 12, 4), S_DIMS, 1e-5),
    's36': ((6, 6, 18, 6), S_DIMS, 1e-6),
    'm36': ((6, 6, 18, 6), M_DIMS, 1e-6),
    'm48': ((8, 8, 24, 8), M_DIMS, 1e-6),
}

#: ConvFormer's and CAFormer's sizes (TPAMI 2024).
CONVFORMER_SIZES = {
    #      depths           dims
    's18': ((3, 3, 9, 3), S_DIMS),
    's36': ((3, 12, 18, 3), S_DIMS),
    'm36': ((3, 12, 18, 3), (96, 192, 384, 576)),
    'b36': ((3, 12, 18, 3), (128, 256, 512, 768)),
}


def family_table(sizes: dict, **family) -> Dict[str, dict]:
    """A family's ``arch_settings``: for each size of the table ``sizes``,
    its depths and dims and the family's own settings ``family``."""
    return {name: dict(depths=row[0], dims=row[1], **family)
            for name, row in sizes.items()}
