"""What ``tools/prepare_data.py`` runs: ``sources`` (per dataset, the files to fetch and where from),
``fetch`` (one file from its sources, resumable and checked; an item in place), ``archives`` (extracting and
moving what an archive holds into the dataset folder), ``imagenet`` (the manual archives and the layout),
``dataset`` (one dataset: its items, the split check)."""
