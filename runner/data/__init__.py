"""Training data: sources -> checked rows -> template -> tokenized rows that fit.

`sources` reads each data source (local text files through `files`, the runner's own
reader); `formats` maps a row of each format onto the runner's three shapes (instruction,
messages, text), says what is wrong with a bad row and which format rows look like;
`rows` builds a recipe's rows: selects, mixes, splits and checks them (`load_examples`,
no tokenizer needed), renders them into TRL's rows (`trl_rows`, which reads nothing) and tokenizes and
fits them to max_length, counting every row (`fit_data`, with `truncation`); `store`
keeps the result once for every training process (`stored_data`, in `cache` by
content) and is what they read it through (`training_data`).
"""
