"""Getting and preparing real images: the ISIC Archive client, transform and augment."""
