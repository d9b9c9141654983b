"""The vmalloc model: areas, the busy tree, allocation, lazy free, purge, vm_unmap_aliases."""
