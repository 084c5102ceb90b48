#!/usr/bin/env bash
# Every row of the README's results table, on the benchmark world of bench/synthetic_methods.py.
# Finished runs under runs/synth-bench-g4 are reused, so a rerun only evaluates; from nothing it trains
# for several hours on 2 cores (every pretrained start included). The full table is on docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
B="python bench/synthetic_methods.py"
C=bench/configs
S=seqTransf-video-init-e8

# The defaults: meanP (three seeds), seqTransf, TS2-Net, ProST (three seeds) and MMT from the backbone pretrained
# with dense distillation from the objects network (the configs equal the defaults)
$B --out bench/results/pretrain_distill.json --postproc none is \
    --run meanP-distill=clip4clip-meanp@$C/pretrain_distill.json --run meanP-distill-seed1=clip4clip-meanp@$C/pretrain_distill_seed_1.json \
    --run meanP-distill-seed2=clip4clip-meanp@$C/pretrain_distill_seed_2.json \
    --run seqTransf-distill=clip4clip-seqtransf@$C/pretrain_distill.json --run ts2net-distill=ts2net@$C/pretrain_distill.json \
    --run prost-distill=prost@$C/pretrain_distill.json
$B --out bench/results/prost_distill_seed_1.json --postproc none is --run prost-distill-seed1=prost@$C/pretrain_distill_seed_1.json
$B --out bench/results/prost_distill_seed_2.json --postproc none is --run prost-distill-seed2=prost@$C/pretrain_distill_seed_2.json
# every pretraining built a second time: ProST's synthetic-video one with train.init_seed 1; the backbone and
# its teacher were rebuilt on another machine (meanP-distill-rebuild is meanP-distill's recipe on that build)
$B --out bench/results/prost_init_seed_1.json --postproc none is --run prost-distill-init1=prost@$C/prost_init_seed_1.json \
    --run meanP-distill-rebuild=clip4clip-meanp@$C/pretrain_distill.json
$B --out bench/results/mmt_distill.json --postproc none is --run mmt-distill=mmt@$C/mmt_distill.json
# the same backbone with its distillation teacher built for 600 steps (meanP at three seeds, ProST)
$B --out bench/results/teacher_600.json --postproc none is \
    --run meanP-t600=clip4clip-meanp@$C/teacher_600.json --run meanP-t600-seed1=clip4clip-meanp@$C/teacher_600_seed_1.json \
    --run meanP-t600-seed2=clip4clip-meanp@$C/teacher_600_seed_2.json --run prost-t600=prost@$C/teacher_600.json
# Every run below fine-tunes from the plain backbone, the default before distillation: its configs pin
# "pretrain": {"distill": 0} (plain_backbone.json where a run had no config)
# meanP (and QB-Norm IS / DIS on it)
$B --postproc none is dis --run meanP-v2=clip4clip-meanp@$C/plain_backbone.json
# seqTransf, TS2-Net, ProST: their recipes (the defaults but for the backbone), two seeds each; meanP pretrained the same way
$B --out bench/results/video_pretrain.json --postproc none is \
    --run $S=clip4clip-seqtransf@$C/video_init_epochs_8.json --run $S-seed1=clip4clip-seqtransf@$C/video_init_epochs_8_seed_1.json \
    --run ts2net-video-init-e8=ts2net@$C/video_init_epochs_8.json --run ts2net-video-init-e8-seed1=ts2net@$C/video_init_epochs_8_seed_1.json \
    --run prost-video-init-e8=prost@$C/video_init_epochs_8.json --run prost-video-init-e8-seed1=prost@$C/video_init_epochs_8_seed_1.json \
    --run meanP-video-init-e8=clip4clip-meanp@$C/video_init_epochs_8.json
# MMT: its recipe (three fine-tunes averaged) at three seeds, and the one before (the objects network at 600 steps)
$B --out bench/results/objects_steps.json --postproc none is \
    --run mmt-objects-1200=mmt@$C/plain_backbone.json --run mmt-objects-1200-seed3=mmt@$C/seed_3.json --run mmt-objects-1200-seed6=mmt@$C/seed_6.json \
    --run mmt-objects-1200-no-audio=mmt@$C/mmt_objects_1200_no_audio.json \
    --run mmt-no-appearance=mmt@$C/mmt_no_appearance.json --run mmt-no-appearance-seed3=mmt@$C/mmt_no_appearance_seed_3.json   # without audio (the audio ablation), without the appearance expert
$B --out bench/results/objects_schedule.json --postproc none is \
    --run mmt-default=mmt@$C/mmt_objects_steps_600.json --run mmt-default-seed3=mmt@$C/mmt_objects_steps_600_seed_3.json
# MMT single fine-tunes with and without audio and the members of the best ensemble before,
# on an earlier objects network (their configs pin its recipe: "objects": {"steps": 600, "warmup_steps": 30, "min_lr_ratio": 0.05})
$B --out bench/results/order_streams.json --postproc none is \
    --run mmt-order-streams=mmt@$C/mmt_order_streams.json --run mmt-order-streams-seed1=mmt@$C/mmt_order_streams_seed_1.json \
    --run mmt-order-streams-seed2=mmt@$C/mmt_order_streams_seed_2.json \
    --run mmt-order-streams-no-audio=mmt@$C/mmt_order_streams_no_audio.json
$B --out bench/results/sound_negatives.json --postproc none is \
    --run mmt-sound-neg=mmt@$C/mmt_sound_negatives.json --run mmt-sound-neg-seed1=mmt@$C/mmt_sound_negatives_seed_1.json \
    --run mmt-sound-neg-seed2=mmt@$C/mmt_sound_negatives_seed_2.json
# the best pipeline: MMT's default at three seeds, MMT without appearance, two seqTransf soups and meanP fused (tvr ensemble)
$B --out bench/results/seqtransf_soup_default.json --postproc none is \
    --run seqTransf-soup-default=clip4clip-seqtransf@$C/seqtransf_soup.json --run seqTransf-soup-seed3=clip4clip-seqtransf@$C/seqtransf_soup_seed_3.json
$B --out bench/results/soup_ensembles.json --postproc none is --run meanP=clip4clip-meanp@$C/plain_backbone.json
$B --out bench/results/objects_steps.json --postproc none is \
    --run ensemble-mmt-1200-3-seqtransf-2-meanp-noapp=ensemble@mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+seqTransf-soup-default+seqTransf-soup-seed3+meanP+mmt-no-appearance \
    --run ensemble-mmt-1200-3-seqtransf-2-meanp-noapp3=ensemble@mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+seqTransf-soup-default+seqTransf-soup-seed3+meanP+mmt-no-appearance-seed3 \
    --run ensemble-mmt-4-1200-seqtransf-2=ensemble@mmt-objects-1200+mmt-objects-1200-seed3+mmt-default+mmt-default-seed3+seqTransf-soup-default+seqTransf-soup-seed3
# the same choice made on a second world (seed 7) instead of the test split
python bench/ensemble_selection.py --check bench/results/objects_steps.json \
    --ensemble ensemble-mmt-1200-2=mmt-objects-1200+mmt-objects-1200-seed3 \
    --ensemble ensemble-mmt-1200-2-seqtransf=mmt-objects-1200+mmt-objects-1200-seed3+seqTransf-soup-default \
    --ensemble ensemble-mmt-1200-2-seqtransf-2=mmt-objects-1200+mmt-objects-1200-seed3+seqTransf-soup-default+seqTransf-soup-seed3 \
    --ensemble ensemble-mmt-1200-2-seqtransf-meanp=mmt-objects-1200+mmt-objects-1200-seed3+seqTransf-soup-default+meanP \
    --ensemble ensemble-mmt-1200-3-seqtransf-meanp=mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+seqTransf-soup-default+meanP \
    --ensemble ensemble-mmt-1200-3-seqtransf-2-meanp=mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+seqTransf-soup-default+seqTransf-soup-seed3+meanP \
    --ensemble ensemble-mmt-1200-3-seqtransf-2-meanp-noapp=mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+seqTransf-soup-default+seqTransf-soup-seed3+meanP+mmt-no-appearance \
    --ensemble ensemble-mmt-1200-3-seqtransf-2-meanp-noapp3=mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+seqTransf-soup-default+seqTransf-soup-seed3+meanP+mmt-no-appearance-seed3 \
    --ensemble ensemble-mmt-4-1200-seqtransf-2=mmt-objects-1200+mmt-objects-1200-seed3+mmt-default+mmt-default-seed3+seqTransf-soup-default+seqTransf-soup-seed3
# members chosen on the second world too, from a pool of finished runs (forward and bagged selection), fused with tvr ensemble
# (the members and weights below are those ensemble_greedy.json records)
POOL=meanP+seqTransf-soup-default+seqTransf-soup-seed3+$S+soup-seqTransf-mixed-3+mmt-objects-1200+mmt-objects-1200-seed3+mmt-objects-1200-seed6+mmt-objects-1200-no-audio+mmt-no-appearance+mmt-no-appearance-seed3+mmt-default+mmt-default-seed3+mmt-soup-default+mmt-soup-seed3
python bench/ensemble_selection.py --out bench/results/ensemble_greedy.json --bags 20 --greedy $POOL
$B --out bench/results/objects_steps.json --postproc none is \
    --run ensemble-greedy=ensemble@mmt-objects-1200-seed6+seqTransf-soup-seed3+mmt-objects-1200-no-audio+mmt-objects-1200-seed3 \
    --run ensemble-bagged=ensemble@seqTransf-soup-default*6+seqTransf-soup-seed3*16+mmt-objects-1200*8+mmt-objects-1200-seed3*9+mmt-objects-1200-seed6*12+mmt-objects-1200-no-audio*21+mmt-no-appearance-seed3*1 \
    --run mmt-objects-1200-no-audio-seed3=mmt@$C/mmt_objects_1200_no_audio_seed_3.json
python bench/ensemble_selection.py --out bench/results/ensemble_greedy_16.json --bags 20 --greedy $POOL+mmt-objects-1200-no-audio-seed3
# the best pipeline: the same selection from the pool with the distilled backbone's inner-product runs added (18 runs; TS2-Net and ProST cannot be fused), fused with tvr ensemble
# (the members and weights below are those ensemble_greedy_distill.json records)
python bench/ensemble_selection.py --out bench/results/ensemble_greedy_distill.json --bags 20 \
    --greedy $POOL+meanP-distill+seqTransf-distill+mmt-distill
$B --out bench/results/ensemble_distill.json --postproc none is \
    --run ensemble-greedy-distill=ensemble@mmt-objects-1200-seed6+seqTransf-soup-seed3+mmt-objects-1200-no-audio+meanP-distill+mmt-objects-1200-seed3 \
    --run ensemble-bagged-distill=ensemble@meanP*1+seqTransf-soup-default*9+seqTransf-soup-seed3*16+mmt-objects-1200*11+mmt-objects-1200-seed3*8+mmt-objects-1200-seed6*7+mmt-objects-1200-no-audio*21+mmt-no-appearance-seed3*3+meanP-distill*10+mmt-distill*8
# the best pipeline before: nine runs fused
$B --out bench/results/order_streams.json --postproc none is dis \
    --run ensemble-9-mix=ensemble@meanP-video-init-e8+$S+$S-seed1+mmt-sound-neg+mmt-sound-neg-seed1+mmt-sound-neg-seed2+mmt-order-streams+mmt-order-streams-seed1+mmt-order-streams-seed2
# CrossTVR re-ranking the default seqTransf's top 15: the paper's match score and the default residual one
python bench/rerank_synthetic.py --first-stage runs/synth-bench-g4/$S --run seqTransf-video-init=$C/crosstvr_standalone.json \
    --run residual=$C/crosstvr_residual.json --out bench/results/rerank_seqtransf_video_init.json
# TS2-Net's token shift at ViT-B/32's share of tokens, and its default, on the same backbone
$B --out bench/results/ts2net_shift_stride.json --postproc none --run ts2net-stride7=ts2net@$C/ts2net_shift_stride_7.json \
    --run ts2net-rebuild=ts2net
# the default residual CrossTVR on the distilled ProST (the second build of every pretraining, above)
python bench/rerank_synthetic.py --first-stage runs/synth-bench-g4/prost-distill-init1 \
    --run prost-distill-init1-residual=$C/crosstvr_residual.json --out bench/results/rerank_prost_distill.json
# the issue's reference model, rebuilt outside tvr
python bench/plain_dual_encoder.py
