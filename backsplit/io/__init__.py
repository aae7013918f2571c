"""Reading and writing image and segmentation files: images (SimpleITK, checked end to end), Slicer ``.seg.nrrd``,
labelmaps, fast ``.nii.gz`` writing, grid geometry, and cases (image channels plus named masks) read from files."""
