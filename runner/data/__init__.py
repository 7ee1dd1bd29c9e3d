"""Training data: sources -> checked rows -> template -> TRL rows.

`sources` reads each data source into a `datasets.Dataset`; `formats` maps a row of each
format onto the runner's three shapes (instruction, messages, text) and says what is
wrong with a bad row; `prepare` selects, mixes, splits and checks the rows of a recipe
(`load_examples`, no tokenizer needed) and renders them into the rows SFTTrainer trains
on (`to_trl_rows`).
"""
