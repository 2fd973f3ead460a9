"""Reading scans into covseg's (z, y, x) form and writing results back in their geometry."""
from covseg.io.inspect import chest_ct_warnings, describe
from covseg.io.readers import read_scan
from covseg.io.scan import Geometry, Scan
from covseg.io.writers import atomic_write, check_writable, mask_suffix, write_csv, write_mask

__all__ = ["Geometry", "Scan", "atomic_write", "check_writable", "chest_ct_warnings", "describe",
           "mask_suffix", "read_scan", "write_csv", "write_mask"]
