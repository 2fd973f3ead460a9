"""The label map every part of covseg speaks (Anam-Net's three classes)."""

BACKGROUND, ABNORMAL, NORMAL = 0, 1, 2  # outside the lungs; GGO + consolidation + effusion; normal lung
