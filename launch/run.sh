#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds, and runs temoe on
# several ranks under mpirun. Until the controller issue lands this is an expert-parallel forward
# of the tiny default model over a batch of token sequences.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash launch/setup.sh
RANKS=${TEMOE_RANKS:-2}
RUN_DIR=${TEMOE_RUN_DIR:-runs/default}
mkdir -p "$RUN_DIR"
model=$RUN_DIR/model
if [[ ! -f $model/config.json ]]; then
  ./build/temoe init-model --arch mixtral --preset tiny --seed 1 --out "$model"
fi
# A fixed batch of token ids (4 sequences of 64), written by numpy from Debian's python3.
if [[ ! -f $RUN_DIR/tokens.npy ]]; then
  /usr/bin/python3 -c "import numpy as np; np.save('$RUN_DIR/tokens.npy', np.random.default_rng(0).integers(0, 128, size=(4, 64), dtype=np.int64))"
fi
./build/temoe inspect "$model" --ep "$RANKS"
bash launch/mpirun.sh -np "$RANKS" ./build/temoe forward --config configs/tiny.cfg --model "$model" \
  --tokens "$RUN_DIR/tokens.npy" --out "$RUN_DIR/logits.npy"
/usr/bin/python3 -c "import numpy as np; x = np.load('$RUN_DIR/logits.npy'); print('logits', x.shape, 'mean %.4f std %.4f' % (x.mean(), x.std()))"
