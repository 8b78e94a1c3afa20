"""Write nbs/index.ipynb (the documentation site's home page) from README.md, one markdown cell per `## ` section.

    python scripts/readme_to_index.py

nbdev would make the README from index.ipynb with `nbdev_readme`, which needs Quarto; Quarto cannot be installed
offline (issue 22), so the README is the source and this keeps the home page equal to it. Image links are rewritten
from the README's `nbs/images/` to the notebook's `images/`. Cell ids are numbered, so the output is stable.
"""
import json, re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
text = (root/'README.md').read_text().replace('](nbs/images/', '](images/')
sections = [s.strip('\n') for s in re.split(r'(?m)^(?=## )', text) if s.strip()]
cells = [dict(cell_type='markdown', id=f'readme{i:02d}', metadata={}, source=s.splitlines(True)) for i, s in enumerate(sections)]
nb = dict(cells=cells, metadata={'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}, nbformat=4, nbformat_minor=5)
(root/'nbs'/'index.ipynb').write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
print(f'nbs/index.ipynb: {len(cells)} cells from README.md')
